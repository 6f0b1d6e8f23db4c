package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// WriteReleaseTable prints what a release did: the pool before and after,
// one line per action that was not simply done (its reason through
// Printable), what a cap left in place, and why nothing was done. PTYs
// are named as the platform names them (pts/N, ttysNNN).
func WriteReleaseTable(w io.Writer, rep Release, ptyName func(index int) string) {
	fmt.Fprintf(w, "PTYs in use: %d before, %d after (limit %d); %d done, %d skipped, %d failed\n",
		rep.PoolBefore.InUse, rep.PoolAfter.InUse, rep.PoolAfter.Limit,
		rep.Count(act.Done), rep.Count(act.Skipped), rep.Count(act.Failed))
	fmt.Fprintln(w, DescribeFreed(rep.Freed, ptyName))
	for _, line := range OwnCloses(rep.Actions, ptyName) {
		fmt.Fprintln(w, "  "+line)
	}
	for _, a := range rep.Actions {
		if a.Result == act.Done && a.Reason == "" {
			continue
		}
		what := fmt.Sprintf("pid %d %s", a.PID, Printable(a.Kind))
		if a.FD != nil && a.Index != nil {
			what = fmt.Sprintf("pid %d fd %d (%s)", a.PID, *a.FD, ptyName(*a.Index))
		}
		fmt.Fprintf(w, "  %-7s %s: %s\n", Printable(a.Result), what, Printable(a.Reason))
	}
	writeLeft(w, rep.Left, rep.LeftReason)
	writeNotes(w, rep.Notes)
}

// OwnCloses says, per PTY released with a pollable replacement (hangup,
// quiet) in one process, whether the program closed the replacement
// through its own code within the release's follow-up check, and when:
// "pid 42 pts/5 (hangup, fds 13-14): the program closed it itself 3 ms
// after the release". The check is short (act.FollowUp): a paused stream
// closes only when the program resumes it.
func OwnCloses(actions []act.Action, ptyName func(index int) string) []string {
	type key struct{ pid, index int }
	type group struct {
		method      string
		fds, closed []int
		last        float64
	}
	groups := map[key]*group{}
	var order []key
	for _, a := range actions {
		if a.Kind != "pty" || a.Result != act.Done || a.FD == nil || a.Index == nil || !a.Method.Pollable() {
			continue
		}
		k := key{a.PID, *a.Index}
		g := groups[k]
		if g == nil {
			g = &group{method: string(a.Method)}
			groups[k] = g
			order = append(order, k)
		}
		if string(a.Method) != g.method {
			g.method += "/" + string(a.Method)
		}
		g.fds = append(g.fds, *a.FD)
		if a.ClosedByProgramAfter != nil {
			g.closed = append(g.closed, *a.FD)
			g.last = max(g.last, *a.ClosedByProgramAfter)
		}
	}
	within := fmt.Sprintf("%.1f s", act.FollowUp.Seconds())
	var out []string
	for _, k := range order {
		g := groups[k]
		head := fmt.Sprintf("pid %d %s (%s, %s): ", k.pid, ptyName(k.index), g.method, fdList(g.fds))
		after := fmt.Sprintf("%.0f ms after the release", g.last*1000)
		if g.last < 0.001 {
			after = "before the follow-up check began"
		}
		switch {
		case len(g.closed) == len(g.fds):
			out = append(out, head+"the program closed it itself, "+after)
		case len(g.closed) > 0:
			out = append(out, head+fmt.Sprintf("the program closed %s itself (%s), not yet the others within %s", fdList(g.closed), after, within))
		case g.method == "quiet":
			out = append(out, head+"the program keeps it: a quiet replacement never wakes its loop")
		default:
			out = append(out, head+fmt.Sprintf("the program had not closed it within %s (a paused stream closes when the program resumes it)", within))
		}
	}
	return out
}

// fdList is "fd 3" or "fds 3, 4".
func fdList(fds []int) string {
	s := make([]string, len(fds))
	for i, fd := range fds {
		s[i] = strconv.Itoa(fd)
	}
	if len(fds) == 1 {
		return "fd " + s[0]
	}
	return "fds " + strings.Join(s, ", ")
}

// WriteReleasePlan prints what release --dry-run would do.
func WriteReleasePlan(w io.Writer, s *snapshot.Snapshot, items []plan.Item, notes []string) {
	fmt.Fprintf(w, "Dry run: would release %s. Nothing was changed.\n", Describe(items))
	WriteAuditTable(w, s, items)
	n, why := Left(items)
	writeLeft(w, n, why)
	writeNotes(w, notes)
}

func writeLeft(w io.Writer, n int, reason string) {
	if n > 0 {
		fmt.Fprintln(w, "left: "+Printable(reason))
	}
}

// Describe says in a phrase what a plan will do, for the dry run and the
// confirmation question: "3 PTY fds in 1 processes and end 0 stuck
// children".
func Describe(items []plan.Item) string {
	fds, kills := 0, 0
	procs, holders := map[int]bool{}, map[int]bool{}
	for _, it := range items {
		switch {
		case it.Verdict == plan.Reclaim:
			fds++
			procs[it.Process.PID] = true
		case it.Verdict == plan.Kill && it.Method == policy.MethodKillHolder:
			holders[it.Process.PID] = true
		case it.Verdict == plan.Kill:
			kills++
		}
	}
	out := fmt.Sprintf("%d PTY fds in %d processes and end %d stuck children", fds, len(procs), kills)
	if len(holders) > 0 {
		out += fmt.Sprintf(" and %d disposable holders", len(holders))
	}
	return out
}

// maxWhy bounds the per-process lines WhyNothing writes (a --name can
// match every shell on the machine).
const maxWhy = 10

// WhyNothing says why a release acts on nothing: for each named process
// (sel, from --pid or --name) that gets no action, one line ("every PTY
// of pid 42 (app) is live"); when nothing at all is acted on and nothing
// was named, one line for the whole run. all is the whole scan, live PTYs
// included; items is the plan. The lines hold raw process data (comm):
// human output passes them through Printable.
func WhyNothing(s *snapshot.Snapshot, all []classify.Finding, items []plan.Item, sel func(*snapshot.Process) bool) []string {
	acting := map[int]bool{}
	for _, it := range items {
		if it.Verdict != plan.Skip {
			acting[it.Process.PID] = true
			if it.Kind == classify.KindOrphan {
				acting[it.Process.PPID] = true
			}
		}
	}
	if sel == nil {
		if len(acting) > 0 {
			return nil
		}
		return []string{wholeRun(items)}
	}
	var lines []string
	more := 0
	for _, p := range s.Processes {
		if !sel(p) || acting[p.PID] {
			continue
		}
		if len(lines) == maxWhy {
			more++
			continue
		}
		lines = append(lines, whyProcess(p, all, items))
	}
	if more > 0 {
		lines = append(lines, fmt.Sprintf("and %d more named processes with nothing to release", more))
	}
	return lines
}

func wholeRun(items []plan.Item) string {
	if len(items) == 0 {
		return "nothing to release: no leaked PTY fd and no stuck child found"
	}
	return fmt.Sprintf("nothing to release: all %d leak candidates are skipped: %s", len(items), reasonCounts(items))
}

// whyProcess explains why one named process gets no action.
func whyProcess(p *snapshot.Process, all []classify.Finding, items []plan.Item) string {
	who := fmt.Sprintf("pid %d (%s)", p.PID, p.Comm)
	live := 0
	for _, f := range all {
		if f.Kind == classify.KindPTY && f.Process.PID == p.PID && f.State == classify.Live {
			live++
		}
	}
	var skipped []plan.Item
	for _, it := range items {
		if it.Process.PID == p.PID || (it.Kind == classify.KindOrphan && it.Process.PPID == p.PID) {
			skipped = append(skipped, it)
		}
	}
	switch {
	case len(skipped) == 0 && live == 0:
		return who + ": nothing to release: it holds no PTY fd and has no stuck child"
	case len(skipped) == 0:
		return fmt.Sprintf("every PTY of %s is live: nothing to release (%s; audit --all --pid %d shows why)", who, fdCount(live, "PTY fd"), p.PID)
	}
	out := fmt.Sprintf("%s: nothing to release: its %s %s skipped: %s", who, fdCount(len(skipped), "leak candidate"), allOrAre(skipped), reasonCounts(skipped))
	if live > 0 {
		out += fmt.Sprintf("; %s live", fdCount(live, "more PTY fd"))
	}
	return out
}

func fdCount(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func allOrAre(items []plan.Item) string {
	if len(items) == 1 {
		return "is"
	}
	return "are all"
}

// reasonCounts lists the distinct skip reasons, most frequent first:
// `still registered in the holder's epoll set: ... (3); denied by ... (1)`.
func reasonCounts(items []plan.Item) string {
	count := map[string]int{}
	var order []string
	for _, it := range items {
		if count[it.Reason] == 0 {
			order = append(order, it.Reason)
		}
		count[it.Reason]++
	}
	sort.SliceStable(order, func(i, j int) bool { return count[order[i]] > count[order[j]] })
	if len(order) == 1 {
		return order[0]
	}
	parts := make([]string, 0, 3)
	for i, r := range order {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("%d other reasons", len(order)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s (%d)", r, count[r]))
	}
	return strings.Join(parts, "; ")
}
