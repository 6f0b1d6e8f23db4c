// Package classify decides, from a snapshot alone, which PTY fds are live,
// unattached or hung up, and which processes are orphan children stuck
// forever, each with evidence a person can check. It is platform-neutral and
// touches nothing.
package classify

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// State is what a finding is.
type State string

// The states of cli.md.
const (
	Live       State = "live"
	Unattached State = "unattached"
	HungUp     State = "hung-up"
	Orphan     State = "orphan"
)

// Kind tells PTY findings from orphan children.
type Kind string

// Finding kinds.
const (
	KindPTY    Kind = "pty"
	KindOrphan Kind = "orphan"
)

// Finding is one PTY fd or one stuck child, with the evidence for its state.
type Finding struct {
	Kind    Kind
	Process *snapshot.Process
	State   State
	// Evidence is a sentence saying why the state holds.
	Evidence string
	// Idle is the time since the PTY's last I/O, or an orphan's age.
	Idle time.Duration

	// PTY findings.
	FD      int
	Side    snapshot.Side
	PTY     snapshot.PTYID
	PTYName string
	Watched bool
	Proven  bool

	// Orphan findings.
	BlockedFD int
}

// Leak reports whether the finding is a leak candidate.
func (f Finding) Leak() bool { return f.State != Live }

// Options tune classification.
type Options struct {
	// Now is the time idle durations are measured against.
	Now time.Time
	// MinIdle returns the idle bar for a holder: a PTY with I/O more recent
	// than this is live, and an orphan younger than this is not reported.
	MinIdle func(p *snapshot.Process) time.Duration
}

// FixedMinIdle is an Options.MinIdle that applies one bar to everyone.
func FixedMinIdle(d time.Duration) func(*snapshot.Process) time.Duration {
	return func(*snapshot.Process) time.Duration { return d }
}

// Classify returns every PTY fd (live ones included) and every orphan child,
// ordered by pid then fd.
func Classify(s *snapshot.Snapshot, o Options) []Finding {
	if o.MinIdle == nil {
		o.MinIdle = FixedMinIdle(0)
	}
	if o.Now.IsZero() {
		o.Now = s.Taken
	}
	out := classifyPTYs(s, o)
	out = append(out, classifyOrphans(s, o)...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Process.PID != b.Process.PID {
			return a.Process.PID < b.Process.PID
		}
		if a.Kind != b.Kind {
			return a.Kind == KindPTY
		}
		return a.FD < b.FD
	})
	return out
}

// ptyFacts gathers, per PTY, who holds which side: the facts liveness is
// decided on.
type ptyFacts struct {
	masterHolders map[int]bool
	slaveHolders  map[int]bool
	// slaves lists every slave fd that is not hung up, with its holder.
	slaves []heldFD
	// judged is set once sessions and heirs are worked out.
	judged   bool
	sessions []int  // slave-only holders that may be a session's end
	heirs    []heir // slave-only holders that only inherited the slave
}

type heldFD struct {
	pid int
	fd  snapshot.PTYFD
}

// heir is a process that holds a PTY's slave but not its master, only as
// a copy of the open file a master's holder has.
type heir struct {
	pid, fd       int
	fromPID, from int
}

func gatherFacts(s *snapshot.Snapshot) map[snapshot.PTYID]*ptyFacts {
	facts := map[snapshot.PTYID]*ptyFacts{}
	for _, p := range s.Processes {
		for _, f := range p.PTYFDs {
			pf := facts[f.PTY]
			if pf == nil {
				pf = &ptyFacts{masterHolders: map[int]bool{}, slaveHolders: map[int]bool{}}
				facts[f.PTY] = pf
			}
			if f.Side == snapshot.Master {
				pf.masterHolders[p.PID] = true
			} else {
				pf.slaveHolders[p.PID] = true
				if !f.HungUp {
					pf.slaves = append(pf.slaves, heldFD{pid: p.PID, fd: f})
				}
			}
		}
	}
	return facts
}

// judge splits the processes that hold the slave but not the master into
// heirs and possible sessions. An heir holds every slave fd it has only as
// the very open file a holder of the master has (File, from kcmp): what
// fork passes on when the master's holder opened both ends without
// O_CLOEXEC (node-pty). A session opens or is handed its terminal; and a
// slave on fd 0, 1 or 2 is how a session's program talks, so it counts as
// a session even when inherited. Anything unproven is a session: doubt
// keeps a PTY live. Controlling terminals and I/O are judged by the caller,
// for the PTY as a whole.
func (pf *ptyFacts) judge() {
	if pf.judged {
		return
	}
	pf.judged = true
	own := map[uint64]heldFD{}
	for _, h := range pf.slaves {
		if pf.masterHolders[h.pid] && h.fd.File != 0 {
			if _, ok := own[h.fd.File]; !ok {
				own[h.fd.File] = h
			}
		}
	}
	byPID := map[int][]heir{}
	session := map[int]bool{}
	for pid := range pf.slaveHolders {
		if !pf.masterHolders[pid] {
			byPID[pid] = nil
		}
	}
	for _, h := range pf.slaves {
		if pf.masterHolders[h.pid] {
			continue
		}
		from, ok := own[h.fd.File]
		if h.fd.File == 0 || !ok || h.fd.FD <= 2 {
			session[h.pid] = true
			continue
		}
		byPID[h.pid] = append(byPID[h.pid], heir{pid: h.pid, fd: h.fd.FD, fromPID: from.pid, from: from.fd.FD})
	}
	for pid, hs := range byPID {
		if session[pid] || len(hs) == 0 {
			// A hung-up slave only, or a slave not proven inherited.
			if len(hs) == 0 && !session[pid] {
				continue // only hung-up slaves: they pin, they serve no session
			}
			pf.sessions = append(pf.sessions, pid)
			continue
		}
		pf.heirs = append(pf.heirs, hs...)
	}
	sort.Ints(pf.sessions)
	sort.Slice(pf.heirs, func(i, j int) bool {
		if pf.heirs[i].pid != pf.heirs[j].pid {
			return pf.heirs[i].pid < pf.heirs[j].pid
		}
		return pf.heirs[i].fd < pf.heirs[j].fd
	})
}

// controllers maps each PTY index to the processes whose controlling
// terminal has that index; instances are compared with PTYID.Matches.
func controllers(s *snapshot.Snapshot) map[int][]*snapshot.Process {
	c := map[int][]*snapshot.Process{}
	for _, p := range s.Processes {
		if p.CTTY != nil {
			c[p.CTTY.Index] = append(c[p.CTTY.Index], p)
		}
	}
	return c
}

func classifyPTYs(s *snapshot.Snapshot, o Options) []Finding {
	facts := gatherFacts(s)
	ctl := controllers(s)
	var out []Finding
	for _, p := range s.Processes {
		for _, f := range p.PTYFDs {
			name := ptyName(s, f.PTY)
			fi := Finding{
				Kind: KindPTY, Process: p, FD: f.FD, Side: f.Side, PTY: f.PTY,
				PTYName: name, Watched: f.Watched, Proven: f.Proven,
			}
			var lastIO time.Time
			if info := s.PTYs[f.PTY]; info != nil {
				lastIO = info.LastIO
			}
			if !lastIO.IsZero() {
				// Exact, not rounded: a bar under a second must compare
				// with the real idle time. Reports round for display.
				fi.Idle = max(o.Now.Sub(lastIO), 0)
			}
			fi.State, fi.Evidence = ptyState(s, p, f, name, facts[f.PTY], ctl[f.PTY.Index], lastIO, fi.Idle, o.MinIdle(p))
			out = append(out, fi)
		}
	}
	return out
}

// ptyState applies the definitions of the design notes, in order of
// strength of evidence.
func ptyState(s *snapshot.Snapshot, holder *snapshot.Process, f snapshot.PTYFD, name string,
	facts *ptyFacts, ctl []*snapshot.Process, lastIO time.Time, idle, minIdle time.Duration) (State, string) {
	if f.HungUp {
		return HungUp, fmt.Sprintf("the master of %s is closed and the slave hung up; this fd alone still pins the PTY", name)
	}
	for _, c := range ctl {
		if c.CTTY.Matches(f.PTY) {
			return Live, fmt.Sprintf("%s is the controlling terminal of pid %d (%s)", name, c.PID, c.Comm)
		}
	}
	facts.judge()
	if len(facts.sessions) > 0 {
		if len(facts.sessions) == 1 && facts.sessions[0] == holder.PID {
			return Live, fmt.Sprintf("this process holds the slave of %s but not its master, and not only as an inherited copy of a master holder's fd: it may be the session's end", name)
		}
		return Live, fmt.Sprintf("pid %s has the slave of %s open", joinPIDs(s, facts.sessions), name)
	}
	if len(facts.masterHolders) == 0 {
		// A slave that is not hung up has a master somewhere; if no process
		// we can read holds it, someone we cannot see may be using it.
		return Live, fmt.Sprintf("the master of %s is held by a process this scan cannot see", name)
	}
	info := s.PTYs[f.PTY]
	if info != nil && info.KernelChecked && info.Session != 0 {
		return Live, fmt.Sprintf("%s is the controlling terminal of session %d (the kernel says so)", name, info.Session)
	}
	if s.Unreadable > 0 && !(info != nil && info.KernelChecked && info.SlaveClosed) {
		return Live, fmt.Sprintf("%d processes could not be read and may hold the slave of %s (run as root)", s.Unreadable, name)
	}
	if lastIO.IsZero() {
		return Live, fmt.Sprintf("the last I/O time of %s is unknown", name)
	}
	if idle < minIdle {
		return Live, fmt.Sprintf("%s saw I/O %s ago, within min-idle %s", name, idle.Truncate(time.Second), minIdle)
	}
	if len(facts.heirs) > 0 {
		return Unattached, fmt.Sprintf("no session uses %s: it is nobody's controlling terminal, and besides its master's holders only %s, no I/O for %s",
			name, inheritance(s, facts.heirs), idle.Truncate(time.Second))
	}
	if s.Unreadable > 0 {
		return Unattached, fmt.Sprintf("no session uses %s: the kernel says no fd of its slave is open anywhere and it is nobody's controlling terminal (%d processes could not be read; they cannot hide one), no I/O for %s",
			name, s.Unreadable, idle.Truncate(time.Second))
	}
	return Unattached, fmt.Sprintf("no session uses %s: it is nobody's controlling terminal, only its master's holders have the slave open, no I/O for %s",
		name, idle.Truncate(time.Second))
}

// inheritance says, for the evidence, which processes hold a slave only by
// inheritance and from whom.
func inheritance(s *snapshot.Snapshot, heirs []heir) string {
	const shown = 3
	parts := make([]string, 0, shown)
	for i, h := range heirs {
		if i == shown {
			break
		}
		parts = append(parts, fmt.Sprintf("pid %s holds the slave as fd %d, inherited: the same open file as fd %d of pid %s, which holds the master",
			joinPIDs(s, []int{h.pid}), h.fd, h.from, joinPIDs(s, []int{h.fromPID})))
	}
	out := strings.Join(parts, "; ")
	if len(heirs) > shown {
		out += fmt.Sprintf("; and %d more fds like this", len(heirs)-shown)
	}
	return out
}

func joinPIDs(s *snapshot.Snapshot, pids []int) string {
	sort.Ints(pids)
	parts := make([]string, 0, len(pids))
	for _, pid := range pids {
		if p := s.Process(pid); p != nil {
			parts = append(parts, fmt.Sprintf("%d (%s)", pid, p.Comm))
		} else {
			parts = append(parts, fmt.Sprint(pid))
		}
	}
	return strings.Join(parts, ", ")
}

func ptyName(s *snapshot.Snapshot, id snapshot.PTYID) string {
	if info := s.PTYs[id]; info != nil && info.Name != "" {
		return info.Name
	}
	return fmt.Sprintf("pty %d", id.Index)
}

// classifyOrphans finds processes blocked in a pipe read that can never
// return: every write end of the pipe is held by processes in the same
// situation. It is the greatest fixed point: start from every blocked
// reader, and drop any whose pipe has a writer outside the set, until
// nothing changes. A reader that catches a signal it does not block is
// never a candidate: its handler could write to the pipe (self-pipe).
func classifyOrphans(s *snapshot.Snapshot, o Options) []Finding {
	if s.Unreadable > 0 {
		return nil // a writer could hide among the unreadable processes
	}
	stuck := map[int]*snapshot.Process{}
	for _, p := range s.Processes {
		b := p.Blocked
		if b == nil || b.SignalHandlers || p.Threads != 1 {
			continue
		}
		if o.Now.Sub(p.Started) < o.MinIdle(p) {
			continue
		}
		if len(s.PipeWriters[b.Pipe]) == 0 {
			continue // no writer at all: the read returns EOF, not stuck
		}
		stuck[p.PID] = p
	}
	for changed := true; changed; {
		changed = false
		for pid, p := range stuck {
			for _, w := range s.PipeWriters[p.Blocked.Pipe] {
				if stuck[w] == nil {
					delete(stuck, pid)
					changed = true
					break
				}
			}
		}
	}
	out := make([]Finding, 0, len(stuck))
	for _, p := range stuck {
		age := o.Now.Sub(p.Started).Truncate(time.Second)
		out = append(out, Finding{
			Kind: KindOrphan, Process: p, State: Orphan, Idle: age, BlockedFD: p.Blocked.FD,
			Evidence: orphanEvidence(s, p, age),
		})
	}
	return out
}

func orphanEvidence(s *snapshot.Snapshot, p *snapshot.Process, age time.Duration) string {
	var others []int
	for _, w := range s.PipeWriters[p.Blocked.Pipe] {
		if w != p.PID {
			others = append(others, w)
		}
	}
	who := "only by itself"
	if len(others) > 0 {
		who = "by itself and by " + joinPIDs(s, others) + ", all stuck the same way"
	}
	return fmt.Sprintf("blocked in read(fd %d) on pipe:[%d], started %s ago; every write end is held %s, and no signal handler can run, so the read can never return",
		p.Blocked.FD, p.Blocked.Pipe, age, who)
}

// Holding is what one process holds: distinct PTYs, and leaked ones (a
// master and its slave, or two dups, count once).
type Holding struct {
	Process *snapshot.Process
	PTYs    int
	Leaked  int
}

// Holdings counts, per holder and in the order holders first appear, the
// distinct PTYs the PTY findings show and how many of them are leaked: the
// one count status, the metrics and the audit share.
func Holdings(fs []Finding) []Holding {
	type counts struct{ all, leaked map[snapshot.PTYID]bool }
	per := map[*snapshot.Process]*counts{}
	var order []*snapshot.Process
	for _, f := range fs {
		if f.Kind != KindPTY {
			continue
		}
		c := per[f.Process]
		if c == nil {
			c = &counts{all: map[snapshot.PTYID]bool{}, leaked: map[snapshot.PTYID]bool{}}
			per[f.Process] = c
			order = append(order, f.Process)
		}
		c.all[f.PTY] = true
		if f.Leak() {
			c.leaked[f.PTY] = true
		}
	}
	out := make([]Holding, 0, len(order))
	for _, p := range order {
		out = append(out, Holding{Process: p, PTYs: len(per[p].all), Leaked: len(per[p].leaked)})
	}
	return out
}
