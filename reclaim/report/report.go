// Package report renders plans and results for people (tables that read at
// 80 columns) and for programs (the JSON of cli.md).
package report

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report/text"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Printable is the one function every human renderer passes process-made
// text through (comm, exe, paths, reasons that quote them, notes, error
// lines): see text.Printable. JSON keeps the exact bytes.
func Printable(s string) string { return text.Printable(s) }

// Finding is one element of audit --json "findings". Fields that do not
// apply to a kind are omitted; fd is kept for PTYs even when 0.
type Finding struct {
	Kind        string        `json:"kind"`
	PID         int           `json:"pid"`
	PPID        *int          `json:"ppid,omitempty"`
	StartTime   uint64        `json:"start_time"`
	Comm        string        `json:"comm"`
	Exe         string        `json:"exe"`
	UID         int           `json:"uid"`
	FD          *int          `json:"fd,omitempty"`
	Side        string        `json:"side,omitempty"`
	Index       *int          `json:"index,omitempty"`
	BlockedFD   *int          `json:"blocked_fd,omitempty"`
	State       string        `json:"state"`
	IdleSeconds float64       `json:"idle_seconds"`
	Watched     *bool         `json:"watched,omitempty"`
	Verdict     string        `json:"verdict"`
	Reason      string        `json:"reason"`
	Method      policy.Method `json:"method,omitempty"`
	// Rung is the step of the remedy ladder the fd got (plan.Rung*).
	Rung string `json:"rung,omitempty"`
}

// Audit is the document audit --json prints.
type Audit struct {
	Pool     snapshot.Pool `json:"pool"`
	Findings []Finding     `json:"findings"`
	Notes    []string      `json:"notes,omitempty"`
	// Ladder says per holder which rung of the remedy ladder takes how
	// many of its fds, and why that one.
	Ladder []Ladder `json:"ladder,omitempty"`
}

// Ladder is one holder's rungs.
type Ladder struct {
	PID   int               `json:"pid"`
	Comm  string            `json:"comm"`
	Steps []plan.LadderStep `json:"steps"`
}

// NewAudit builds the audit document from planned items.
func NewAudit(s *snapshot.Snapshot, items []plan.Item) Audit {
	a := Audit{Pool: s.Pool, Findings: make([]Finding, 0, len(items)), Notes: s.Notes}
	for _, it := range items {
		a.Findings = append(a.Findings, jsonFinding(it))
	}
	for _, l := range plan.Ladders(items) {
		a.Ladder = append(a.Ladder, Ladder{PID: l.PID, Comm: l.Comm, Steps: l.Steps})
	}
	return a
}

func jsonFinding(it plan.Item) Finding {
	p := it.Process
	f := Finding{
		Kind: string(it.Kind), PID: p.PID, StartTime: p.StartTime, Comm: p.Comm, Exe: p.Exe,
		UID: p.UID, State: string(it.State), IdleSeconds: it.Idle.Seconds(),
		Verdict: string(it.Verdict), Reason: it.Reason, Method: it.Method, Rung: it.Rung,
	}
	if it.Kind == classify.KindOrphan {
		f.PPID, f.BlockedFD = ptr(p.PPID), ptr(it.BlockedFD)
		return f
	}
	f.FD, f.Index, f.Watched = ptr(it.FD), ptr(it.PTY.Index), ptr(it.Watched)
	f.Side = it.Side.String()
	return f
}

func ptr[T any](v T) *T { return &v }

// Summary is the one-line summary of an audit, for example
// "495 of 4096 PTYs in use; 495 leaked in 2 processes; 5 stuck children".
func Summary(pool snapshot.Pool, items []plan.Item) string {
	leaked := map[snapshot.PTYID]bool{}
	holders := map[int]bool{}
	orphans := 0
	for _, it := range items {
		switch {
		case it.Kind == classify.KindOrphan:
			orphans++
		case it.Leak():
			leaked[it.PTY] = true
			holders[it.Process.PID] = true
		}
	}
	return fmt.Sprintf("%d of %d PTYs in use; %d leaked in %s; %s",
		pool.InUse, pool.Limit, len(leaked), plural(len(holders), "process", "processes"),
		plural(orphans, "stuck child", "stuck children"))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

// group is one table row: the findings of one process that read the same.
type group struct {
	first plan.Item
	fds   []int
	ptys  map[snapshot.PTYID]bool
	idle  time.Duration // the smallest idle in the group: the honest one
}

func groupKey(it plan.Item) string {
	return fmt.Sprintf("%d/%s/%s/%s/%s/%t/%s/%s", it.Process.PID, it.Kind, it.Side, it.State, it.Verdict, it.Watched, it.Method, reasonClass(it))
}

// reasonClass strips what differs between fds of one kind (PTY names,
// durations) so that their rows can be merged.
func reasonClass(it plan.Item) string {
	if it.Verdict != plan.Skip || it.State == classify.Live {
		return string(it.State)
	}
	r := it.Reason
	if i := strings.IndexAny(r, "0123456789"); i >= 0 {
		r = r[:i]
	}
	return r
}

func groupItems(items []plan.Item) []*group {
	var order []*group
	byKey := map[string]*group{}
	for _, it := range items {
		k := groupKey(it)
		g := byKey[k]
		if g == nil {
			g = &group{first: it, ptys: map[snapshot.PTYID]bool{}, idle: it.Idle}
			byKey[k] = g
			order = append(order, g)
		}
		if it.Kind == classify.KindOrphan {
			g.fds = append(g.fds, it.BlockedFD)
		} else {
			g.fds = append(g.fds, it.FD)
			g.ptys[it.PTY] = true
		}
		if it.Idle < g.idle {
			g.idle = it.Idle
		}
	}
	return order
}

// WriteAuditTable prints the summary and one row per group of alike
// findings, each followed by its reason, wrapped to 80 columns. Every byte
// that comes from a process goes through Printable, so a comm or exe can
// neither send escapes to the terminal nor forge a row.
func WriteAuditTable(w io.Writer, s *snapshot.Snapshot, items []plan.Item) {
	fmt.Fprintln(w, Summary(s.Pool, items))
	writeNotes(w, s.Notes)
	if len(items) == 0 {
		fmt.Fprintln(w, "No leaked PTYs and no stuck children found.")
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-7s %-14s %-6s %-14s %-11s %5s  %s\n", "PID", "COMMAND", "KIND", "FDS", "STATE", "IDLE", "VERDICT")
	for _, g := range groupItems(items) {
		it := g.first
		kind := it.Side.String()
		fds := FormatFDs(g.fds)
		if it.Kind == classify.KindOrphan {
			kind, fds = "orphan", "read fd "+fds
		}
		state := string(it.State)
		if it.Watched {
			state += "*"
		}
		fmt.Fprintf(w, "%-7d %s %-6s %s %-11s %5s  %s\n", it.Process.PID, text.Cell(it.Process.Comm, 14),
			kind, text.Cell(fds, 14), state, FormatDuration(g.idle), it.Verdict)
		reason := Printable(it.Reason)
		if n := len(g.fds); n > 1 {
			reason += fmt.Sprintf(" (%d fds like this)", n)
		}
		for _, line := range wrap(reason, 80-8) {
			fmt.Fprintln(w, "        "+line)
		}
	}
	for _, it := range items {
		if it.Watched {
			fmt.Fprintln(w, "\n* still registered in the holder's epoll set")
			break
		}
	}
	writeLadders(w, items)
}

// writeLadders says per holder which rung takes its fds, when that is not
// plainly the in-place release.
func writeLadders(w io.Writer, items []plan.Item) {
	header := false
	for _, l := range plan.Ladders(items) {
		var steps []string
		plain := true
		for _, s := range l.Steps {
			if s.Rung != plan.RungInPlace || s.Why != "" {
				plain = false
			}
			step := fmt.Sprintf("%s for %s", s.Rung, plural(s.FDs, "fd", "fds"))
			if s.Why != "" {
				step += " (" + s.Why + ")"
			}
			steps = append(steps, step)
		}
		if plain {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nRemedy ladder per holder:")
			header = true
		}
		line := Printable(fmt.Sprintf("pid %d (%s): %s", l.PID, l.Comm, strings.Join(steps, "; ")))
		for i, part := range wrap(line, 80-4) {
			indent := "  "
			if i > 0 {
				indent = "    "
			}
			fmt.Fprintln(w, indent+part)
		}
	}
}

// FormatFDs writes fd numbers as ranges: "3-492 (490)", "3,5,7".
func FormatFDs(fds []int) string {
	s := append([]int(nil), fds...)
	sort.Ints(s)
	var parts []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if j > i {
			parts = append(parts, fmt.Sprintf("%d-%d", s[i], s[j]))
		} else {
			parts = append(parts, strconv.Itoa(s[i]))
		}
		i = j + 1
	}
	out := strings.Join(parts, ",")
	if len(s) > 1 {
		out += fmt.Sprintf(" (%d)", len(s))
	}
	if len(out) > 14 {
		out = fmt.Sprintf("%d fds", len(s))
	}
	return out
}

// FormatDuration prints a short human duration: 45s, 12m, 3h, 4d.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// writeNotes prints the snapshot's notes, one line each.
func writeNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintln(w, "note: "+Printable(n))
	}
}

// wrap breaks s, a Printable string, into lines of at most width columns
// at spaces; a word wider than a line is cut between characters.
func wrap(s string, width int) []string {
	var lines []string
	line, lineW := "", 0
	for _, word := range strings.Split(s, " ") {
		if word == "" {
			continue
		}
		ww := text.Width(word)
		if line != "" && lineW+1+ww > width {
			lines = append(lines, line)
			line, lineW = "", 0
		}
		if ww > width { // a long path: cut it, never mid-character
			for text.Width(word) > width {
				head := cutWidth(word, width)
				lines = append(lines, head)
				word = word[len(head):]
			}
			ww = text.Width(word)
		}
		if line != "" {
			line += " "
			lineW++
		}
		line += word
		lineW += ww
	}
	if line != "" {
		lines = append(lines, line)
	}
	return lines
}

// cutWidth returns the longest prefix of s at most n columns wide (at
// least one character, so that wrap always advances).
func cutWidth(s string, n int) string {
	w := 0
	for i, r := range s {
		rw := text.Width(string(r))
		if i > 0 && w+rw > n {
			return s[:i]
		}
		w += rw
	}
	return s
}
