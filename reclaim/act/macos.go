package act

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/lldb"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// The macOS actor's decisions live here, without build tags, so that they
// run on Linux against fake system calls; darwin.go plugs in libproc,
// kill(2) and lldb.

// macSys is what the macOS actor needs from the system.
type macSys struct {
	// identity reads a process's start time (0 when gone) and whether it
	// has exited: gone, or a zombie whose fds are already closed.
	identity func(pid int) (start uint64, exited bool, err error)
	// signal sends sig to pid; syscall.ESRCH when it is gone.
	signal func(pid int, sig syscall.Signal) error
	sleep  func(time.Duration)
	// blocked re-reads whether an orphan is still blocked as the snapshot
	// proved; "" when it is.
	blocked func(pid int, want *snapshot.BlockedRead) string
	// inPlace re-asks whether root can get the task port; "" when it can.
	inPlace func(pid int) string
	// look reads what fd of pid refers to now.
	look func(pid, fd int) (libproc.FDNow, error)
	// lastIO reads a PTY's last I/O time now.
	lastIO func(index int) time.Time
	// kqueues reads every kqueue registration of pid now.
	kqueues func(pid int) ([]libproc.KQueueReg, error)
	// lldb runs lldb and returns its output. The error is for lldb that
	// could not run (missing, timed out), not for a failed attach.
	lldb lldb.Runner
}

// macActor carries out plans on macOS.
type macActor struct {
	sys macSys
	// grace is how long a process gets between SIGTERM and SIGKILL.
	grace time.Duration
	// exprTimeout bounds each call lldb runs in the holder.
	exprTimeout time.Duration
	// scanLastIO is the last I/O time the scan saw for a PTY; nil skips
	// that check.
	scanLastIO func(snapshot.PTYID) time.Time

	// rungs are the task-port-free rungs' system calls.
	rungs macRungSys

	mu sync.Mutex
	// ended remembers each holder ended for kill-holder items, so that all
	// of its items stand for one kill.
	ended map[snapshot.Key]holderEnd
}

// holderEnd is how ending one holder went.
type holderEnd struct {
	result, reason string
	fd             int // the item that ended it
}

// pollEvery is how often an exit is polled: macOS has no pidfd.
const pollEvery = 50 * time.Millisecond

// reclaim releases one process's items: kill-holder items end the holder
// once, the others are released in place through lldb.
func (m *macActor) reclaim(ctx context.Context, p *snapshot.Process, items []plan.Item, log *zap.Logger) ([]Action, time.Duration) {
	out := make([]Action, len(items))
	var inPlace, revoke, viaInspector []int
	for i, it := range items {
		switch it.Method {
		case policy.MethodKillHolder:
			out[i] = m.killHolder(it, log)
		case policy.MethodRevoke:
			revoke = append(revoke, i)
		case policy.MethodInspector:
			viaInspector = append(viaInspector, i)
		default:
			inPlace = append(inPlace, i)
		}
	}
	for _, group := range []struct {
		idx []int
		run func([]plan.Item) []Action
	}{
		{revoke, func(its []plan.Item) []Action { return m.revokeSlaves(p, its, log) }},
		{viaInspector, func(its []plan.Item) []Action { return m.releaseInspector(ctx, p, its, log) }},
	} {
		if len(group.idx) == 0 {
			continue
		}
		its := make([]plan.Item, len(group.idx))
		for j, i := range group.idx {
			its[j] = items[i]
		}
		for j, a := range group.run(its) {
			out[group.idx[j]] = a
		}
	}
	var frozen time.Duration
	if len(inPlace) > 0 {
		frozen = m.releaseInPlace(ctx, p, items, inPlace, out, log)
	}
	return out, frozen
}

// kill ends an orphan child, or the holder of a kill-holder item.
func (m *macActor) kill(it plan.Item, log *zap.Logger) Action {
	if it.Method == policy.MethodKillHolder {
		return m.killHolder(it, log)
	}
	pid, want := it.Process.PID, it.Process.Blocked
	result, reason := m.end(it.Process.Key(), func() string { return m.sys.blocked(pid, want) }, log)
	return NewAction(it, result, reason)
}

// killHolder ends a holder the first time one of its items comes, and
// reports that outcome for every later item.
func (m *macActor) killHolder(it plan.Item, log *zap.Logger) Action {
	key := it.Process.Key()
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.ended[key]; ok {
		reason := fmt.Sprintf("the holder was ended once for all its fds (with fd %d)", h.fd)
		if h.result != Done {
			reason = fmt.Sprintf("ending the holder (with fd %d) %s: %s", h.fd, h.result, h.reason)
		}
		return NewAction(it, h.result, reason)
	}
	result, reason := m.end(key, nil, log)
	if result == Done && reason == "" {
		reason = "the holder was ended: its PTY fds closed with it"
	}
	if m.ended == nil {
		m.ended = map[snapshot.Key]holderEnd{}
	}
	m.ended[key] = holderEnd{result: result, reason: reason, fd: it.FD}
	return NewAction(it, result, reason)
}

// end ends a process through the kill ladder. Before each signal it must
// still be the same process (pid and start time) and, when still is set,
// still in the state that justified ending it. macOS has no pidfd, so a
// pid reused between the check and kill(2) cannot be excluded; the window
// is one libproc call long.
func (m *macActor) end(key snapshot.Key, still func() string, log *zap.Logger) (string, string) {
	return end(&macProcess{m: m, key: key, still: still}, m.grace, log)
}

// macProcess is a process known by pid and start time, for the kill
// ladder.
type macProcess struct {
	m     *macActor
	key   snapshot.Key
	still func() string
}

func (p *macProcess) pid() int                        { return p.key.PID }
func (p *macProcess) recheck() (bool, string)         { return p.m.same(p.key, p.still) }
func (p *macProcess) signal(sig syscall.Signal) error { return p.m.sys.signal(p.key.PID, sig) }
func (p *macProcess) waitExit(d time.Duration) bool {
	for waited := time.Duration(0); waited < d; waited += pollEvery {
		p.m.sys.sleep(pollEvery)
		start, exited, err := p.m.sys.identity(p.key.PID)
		if err == nil && (exited || start != p.key.StartTime) {
			return true
		}
	}
	return false
}

// same re-checks a process: gone is true when it exited; why says why it
// must not be signalled, "" when it may.
func (m *macActor) same(key snapshot.Key, still func() string) (gone bool, why string) {
	start, exited, err := m.sys.identity(key.PID)
	switch {
	case err != nil:
		return false, fmt.Sprintf("its identity could not be read: %v", err)
	case exited && (start == 0 || start == key.StartTime):
		return true, ""
	case start != key.StartTime:
		return false, fmt.Sprintf("pid %d is another process now (start time changed)", key.PID)
	}
	if still != nil {
		return false, still()
	}
	return false, ""
}

// releaseInPlace releases items[idx] of p inside the process with one lldb
// session, and fills out[idx]. Each fd is checked through libproc before
// (the planned side and minor, no I/O since the scan) and after (now
// /dev/null or closed). It returns how long lldb held the process.
func (m *macActor) releaseInPlace(ctx context.Context, p *snapshot.Process, items []plan.Item, idx []int, out []Action, log *zap.Logger) time.Duration {
	setAll := func(result, reason string) time.Duration {
		for _, i := range idx {
			out[i] = NewAction(items[i], result, reason)
		}
		return 0
	}
	if p.InPlaceRefused != "" {
		return setAll(Failed, p.InPlaceRefused)
	}
	if r := m.sys.inPlace(p.PID); r != "" {
		return setAll(Failed, r)
	}
	if gone, why := m.same(p.Key(), nil); gone {
		return setAll(Skipped, reasonExited)
	} else if why != "" {
		return setAll(Skipped, why)
	}

	var todo []int
	var fds []int
	for _, i := range idx {
		it := items[i]
		now, err := m.sys.look(p.PID, it.FD)
		if err != nil {
			out[i] = NewAction(it, Failed, fmt.Sprintf("fd %d unreadable before the release: %v", it.FD, err))
			continue
		}
		if why := checkPlanned(it, now); why != "" {
			out[i] = NewAction(it, Skipped, why)
			continue
		}
		if m.scanLastIO != nil && !m.sys.lastIO(it.PTY.Index).Equal(m.scanLastIO(it.PTY)) {
			out[i] = NewAction(it, Skipped, ptyLabel(it)+" saw I/O since the scan")
			continue
		}
		todo = append(todo, i)
		fds = append(fds, it.FD)
	}
	if len(todo) == 0 {
		return 0
	}
	// One lldb session per method: a process may hold watched fds (hangup
	// or quiet) beside unwatched ones (devnull).
	var frozen time.Duration
	for _, group := range byMethod(items, todo) {
		frozen += m.releaseGroup(ctx, p, items, group, out, log)
	}
	return frozen
}

// byMethod splits items[idx] by method, in order of first appearance.
func byMethod(items []plan.Item, idx []int) [][]int {
	var order []policy.Method
	groups := map[policy.Method][]int{}
	for _, i := range idx {
		m := items[i].Method
		if _, ok := groups[m]; !ok {
			order = append(order, m)
		}
		groups[m] = append(groups[m], i)
	}
	out := make([][]int, 0, len(order))
	for _, m := range order {
		out = append(out, groups[m])
	}
	return out
}

// releaseGroup releases items[todo], which share one method, with one
// lldb session. For hangup and quiet it first reads the fds' kqueue
// registrations, to make them again on the replacement (dup2 drops the old
// file's), and afterwards proves from the kernel's view that they are
// there.
func (m *macActor) releaseGroup(ctx context.Context, p *snapshot.Process, items []plan.Item, todo []int, out []Action, log *zap.Logger) time.Duration {
	method := items[todo[0]].Method
	var fds []int
	var regs []lldb.KEvent
	want := map[int][]libproc.KQueueReg{}
	if method.Pollable() {
		all, err := m.sys.kqueues(p.PID)
		if err != nil {
			for _, i := range todo {
				out[i] = NewAction(items[i], Failed, fmt.Sprintf("its kqueue registrations are unreadable, so they could not be moved: %v", err))
			}
			return 0
		}
		var kept []int
		for _, i := range todo {
			fd := items[i].FD
			rs, why := libproc.RegsOf(all, fd)
			if why != "" {
				out[i] = NewAction(items[i], Skipped, why)
				continue
			}
			want[fd] = rs
			for _, r := range rs {
				regs = append(regs, keventOf(fd, r))
			}
			kept = append(kept, i)
		}
		todo = kept
	} else {
		for _, i := range todo {
			if items[i].Watched {
				// The plan gives watched fds a pollable method only; a
				// kqueue cannot watch /dev/null or a closed fd.
				out[i] = NewAction(items[i], Skipped, fmt.Sprintf("fd %d is watched by its kqueue: method %s cannot be watched, its event loop would fail (use hangup or quiet)", items[i].FD, method))
			}
		}
	}
	for _, i := range todo {
		if out[i].Result == "" {
			fds = append(fds, items[i].FD)
		}
	}
	if len(fds) == 0 {
		return 0
	}

	res, frozen, err := lldb.Release(ctx, m.sys.lldb, lldb.Target{PID: p.PID, FDs: fds, Method: method, Regs: regs, Timeout: m.exprTimeout})
	if err != nil {
		for _, i := range todo {
			if out[i].Result == "" {
				out[i] = NewAction(items[i], Failed, err.Error())
			}
		}
		return frozen
	}
	if res.AttachError != "" {
		log.Info("lldb could not attach", zap.Int("pid", p.PID), zap.String("error", res.AttachError))
	}
	var after []libproc.KQueueReg
	var afterErr error
	if method.Pollable() {
		after, afterErr = m.sys.kqueues(p.PID)
	}
	for _, i := range todo {
		it := items[i]
		if out[i].Result != "" {
			continue
		}
		now, err := m.sys.look(p.PID, it.FD)
		if err != nil {
			out[i] = NewAction(it, Failed, fmt.Sprintf("fd %d unreadable after the release: %v", it.FD, err))
			continue
		}
		result, reason := released(it, now, res)
		if result == Done && method.Pollable() && now.Kind == libproc.FDSocket {
			result, reason = reRegistered(it.FD, want[it.FD], after, afterErr, res)
		}
		out[i] = NewAction(it, result, reason)
	}
	return frozen
}
