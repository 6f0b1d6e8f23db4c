//go:build linux

package inject

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

// seizeOptions: TRACESYSGOOD tells syscall stops from SIGTRAP, TRACECLONE
// catches threads born during the freeze. Never EXITKILL: if we die, the
// target must live on.
const seizeOptions = unix.PTRACE_O_TRACESYSGOOD | unix.PTRACE_O_TRACECLONE

// spinFor is how long a wait polls without sleeping: a stop normally comes
// within microseconds, and a sleep costs far more than that while the whole
// target is frozen.
const spinFor = time.Millisecond

var (
	errCompat = errors.New("32-bit (compat) thread")
	// errGone means the target exited under us.
	errGone = errors.New("target exited")
	// errCallTimeout: an injected call did not return in time.
	errCallTimeout = errors.New("an injected call did not return in time")
	// errNotStopped: a thread did not stop when interrupted.
	errNotStopped = errors.New("the thread did not stop when interrupted")
)

// sysSeccomp is si_code SYS_SECCOMP: a SIGSYS raised by a seccomp filter's
// RET_TRAP for the call just made.
const sysSeccomp = 1

type threadState int

const (
	// running: seized, interrupt requested, stop not seen yet.
	running threadState = iota
	// stopped: in a ptrace stop we know about.
	stopped
	// gone: exited, or otherwise no longer ours.
	gone
)

type thread struct {
	tid   int
	state threadState
	// groupStop is true when the stop is a job-control stop, not ours.
	groupStop bool
}

// tracer holds every thread of one target. All methods must run on the one
// locked OS thread that seized them.
type tracer struct {
	pid       int
	self      int
	log       *zap.Logger
	threads   map[int]*thread
	order     []int
	firstStop time.Time
	// resignal lists signals taken off a thread during the release (only
	// unblockable ones can arrive then); they are raised again after detach.
	resignal []pendingSignal
	notes    []string
	// trapped counts SIGSYS signals that the target's seccomp filter
	// raised for our calls and that were dropped.
	trapped int
	// hook is called between detaches (tests kill the releaser there).
	hook func(point string)
}

type pendingSignal struct {
	tid int
	sig unix.Signal
}

// newTracer must be called on the locked OS thread that will trace.
func newTracer(pid int, log *zap.Logger) *tracer {
	// TracerPid in /proc/TID/status names the tracing thread, not its
	// process: our tracer is a locked OS thread, rarely the main one.
	return &tracer{pid: pid, self: unix.Gettid(), log: log, threads: map[int]*thread{}}
}

// ptraceRaw is for requests whose addr and data are plain numbers: a
// pointer converted to uintptr must be converted in the Syscall6 call
// itself (see sigCode).
func ptraceRaw(req, tid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(tid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// getSigmask reads the thread's blocked set. The kernel reports the saved
// mask when a ppoll/pselect-style temporary mask is in force, which is the
// one to restore.
func getSigmask(tid int) (uint64, error) {
	var m uint64
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGMASK, uintptr(tid),
		unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return m, nil
}

func setSigmask(tid int, m uint64) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETSIGMASK, uintptr(tid),
		unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// listTasks returns the thread ids of pid, sorted.
func listTasks(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	sort.Ints(tids)
	return tids, nil
}

func taskFile(pid, tid int, name string) string {
	return "/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(tid) + "/" + name
}

func (t *tracer) taskState(tid int) string {
	data, err := os.ReadFile(taskFile(t.pid, tid, "stat"))
	if err != nil {
		return "gone"
	}
	st, err := procfs.ParseStat(data)
	if err != nil {
		return "gone"
	}
	return string(st.State)
}

// exiting reports whether a thread is a zombie or gone.
func (t *tracer) exiting(tid int) bool {
	switch t.taskState(tid) {
	case "Z", "X", "gone":
		return true
	}
	return false
}

// seccompMode reads a thread's Seccomp field (filters are per thread);
// unreadable counts as filtered.
func (t *tracer) seccompMode(tid int) int {
	data, err := os.ReadFile(taskFile(t.pid, tid, "status"))
	if err != nil {
		return 2
	}
	st, err := procfs.ParseStatus(data)
	if err != nil {
		return 2
	}
	return st.Seccomp
}

func (t *tracer) tracedByUs(tid int) bool {
	data, err := os.ReadFile(taskFile(t.pid, tid, "status"))
	if err != nil {
		return false
	}
	st, err := procfs.ParseStatus(data)
	return err == nil && st.TracerPID == t.self
}

func (t *tracer) add(tid int) *thread {
	th := &thread{tid: tid}
	t.threads[tid] = th
	t.order = append(t.order, tid)
	return th
}

// freeze seizes and interrupts every thread, rescanning /proc/PID/task until
// a pass finds no thread it did not know, and waits for all of them to stop.
func (t *tracer) freeze(deadline time.Time) error {
	for round := 0; ; round++ {
		if round > 50 {
			return fmt.Errorf("pid %d keeps creating threads; gave up freezing it", t.pid)
		}
		tids, err := listTasks(t.pid)
		if err != nil {
			return errGone
		}
		fresh := 0
		for _, tid := range tids {
			if _, ok := t.threads[tid]; ok {
				continue
			}
			fresh++
			if err := ptraceRaw(unix.PTRACE_SEIZE, tid, 0, seizeOptions); err != nil {
				switch {
				case errors.Is(err, unix.ESRCH):
					continue // the thread exited meanwhile
				case errors.Is(err, unix.EPERM) && t.exiting(tid):
					continue // ptrace refuses a thread that is exiting; it can do nothing
				case errors.Is(err, unix.EPERM) && t.tracedByUs(tid):
					// Born from a thread we hold: auto-attached with a stop
					// already pending; its clone event may not be read yet.
					t.add(tid)
					continue
				case tid == t.pid:
					return fmt.Errorf("cannot trace pid %d: %v", t.pid, err)
				default:
					return fmt.Errorf("cannot trace thread %d of pid %d: %v", tid, t.pid, err)
				}
			}
			t.add(tid)
			if err := unix.PtraceInterrupt(tid); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("cannot interrupt thread %d of pid %d: %v", tid, t.pid, err)
			}
		}
		if err := t.waitAllStopped(deadline); err != nil {
			return err
		}
		if fresh == 0 {
			return nil
		}
	}
}

// waitAllStopped polls every running thread with WNOHANG (a blocking wait on
// a zombie leader can hang) until all are stopped or the deadline passes.
func (t *tracer) waitAllStopped(deadline time.Time) error {
	var nap time.Duration
	spinUntil := time.Now().Add(spinFor)
	for {
		waiting := 0
		for i := 0; i < len(t.order); i++ { // t.order grows on clone events
			th := t.threads[t.order[i]]
			if th.state != running {
				continue
			}
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(th.tid, &ws, unix.WNOHANG|unix.WALL, nil)
			switch {
			case errors.Is(err, unix.EINTR):
				waiting++
				continue
			case errors.Is(err, unix.ECHILD):
				th.state = gone
				continue
			case err != nil:
				return fmt.Errorf("waiting for thread %d of pid %d: %v", th.tid, t.pid, err)
			case wpid == 0:
				if nap > 0 {
					// Not reporting: an exited thread or a zombie leader
					// never will.
					if s := t.taskState(th.tid); s == "Z" || s == "X" || s == "gone" {
						th.state = gone
						continue
					}
				}
				waiting++
				continue
			}
			if err := t.onFreezeStop(th, ws); err != nil {
				return err
			}
			if th.state == running {
				waiting++
			}
		}
		if waiting == 0 {
			if t.liveThreads() == 0 {
				return errGone
			}
			return nil
		}
		if time.Now().After(deadline) {
			for _, tid := range t.order {
				if th := t.threads[tid]; th.state == running {
					return fmt.Errorf("thread %d of pid %d did not stop in time (state %s; uninterruptible sleep?)",
						tid, t.pid, t.taskState(tid))
				}
			}
		}
		// Most threads stop within microseconds: spin a little first.
		if time.Now().After(spinUntil) {
			nap = min(max(2*nap, 20*time.Microsecond), time.Millisecond)
			time.Sleep(nap)
		}
	}
}

func (t *tracer) liveThreads() int {
	n := 0
	for _, th := range t.threads {
		if th.state != gone {
			n++
		}
	}
	return n
}

// onFreezeStop handles one wait status seen while freezing.
func (t *tracer) onFreezeStop(th *thread, ws unix.WaitStatus) error {
	switch {
	case ws.Exited() || ws.Signaled():
		th.state = gone
		if th.tid == t.pid {
			return errGone
		}
		return nil
	case !ws.Stopped():
		return nil
	}
	sig := ws.StopSignal()
	event := uint32(ws) >> 16
	if event != unix.PTRACE_EVENT_STOP {
		// Any ptrace trap clears a pending interrupt, so ask again while
		// the thread is trapped: the kernel then stops it once more right
		// after it is resumed.
		if err := unix.PtraceInterrupt(th.tid); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("cannot interrupt thread %d of pid %d: %v", th.tid, t.pid, err)
		}
	}
	switch {
	case event == unix.PTRACE_EVENT_STOP:
		// Our interrupt, a new thread's first stop, or a group-stop; all
		// are clean stops where registers can be saved.
		th.state = stopped
		th.groupStop = sig != unix.SIGTRAP
		if t.firstStop.IsZero() {
			t.firstStop = time.Now()
		}
		return nil
	case event == unix.PTRACE_EVENT_CLONE:
		msg, err := unix.PtraceGetEventMsg(th.tid)
		if err == nil {
			if _, ok := t.threads[int(msg)]; !ok {
				t.add(int(msg))
			}
		}
		return t.resume(th.tid, 0)
	case event != 0 || sig == unix.SIGTRAP|0x80:
		return t.resume(th.tid, 0)
	default:
		// A signal-delivery stop is not ours: deliver the signal now, so
		// that it is neither lost nor delayed; the renewed interrupt
		// stops the thread right after.
		t.log.Debug("passing on signal during freeze", zap.Int("tid", th.tid), zap.Stringer("signal", sig))
		return t.resume(th.tid, sig)
	}
}

func (t *tracer) resume(tid int, sig unix.Signal) error {
	err := unix.PtraceCont(tid, int(sig))
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("resuming thread %d of pid %d: %v", tid, t.pid, err)
	}
	return nil
}

// syscallStop resumes tid with PTRACE_SYSCALL and waits for its next syscall
// stop. Other stops on the way are handled: group-stops and leftover
// interrupts are stepped over, a signal (only unblockable or forced ones get
// through the full mask) is held back to be raised again after detach, except
// SIGSYS, which our own call caused through a seccomp filter.
func (t *tracer) syscallStop(tid int, deadline time.Time) error {
	if err := unix.PtraceSyscall(tid, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return err
	}
	var nap time.Duration
	spinUntil := time.Now().Add(spinFor)
	for detours := 0; ; {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			return errGone
		case err != nil:
			return err
		case wpid == 0:
			if time.Now().After(deadline) {
				return errCallTimeout
			}
			if time.Now().Before(spinUntil) {
				// The woken tracee often waits for this very CPU: give
				// it up instead of burning it.
				unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
				continue
			}
			// A killed thread may never report: its zombie waits for
			// sibling threads that are stopped by us.
			if s := t.taskState(tid); s == "Z" || s == "X" || s == "gone" {
				t.threads[tid].state = gone
				return errGone
			}
			nap = min(max(2*nap, 10*time.Microsecond), time.Millisecond)
			time.Sleep(nap)
			continue
		}
		if ws.Exited() || ws.Signaled() {
			t.threads[tid].state = gone
			return errGone
		}
		if !ws.Stopped() {
			continue
		}
		sig := ws.StopSignal()
		if sig == unix.SIGTRAP|0x80 {
			return nil
		}
		if detours++; detours > 16 {
			return fmt.Errorf("thread %d of pid %d keeps stopping unexpectedly", tid, t.pid)
		}
		if uint32(ws)>>16 == 0 && sig != unix.SIGTRAP {
			t.withhold(tid, sig)
		}
		if err := unix.PtraceSyscall(tid, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return errGone
			}
			return err
		}
	}
}

// withhold takes a signal off a thread at its signal-delivery stop. A
// SIGSYS that a seccomp filter raised for our own call is dropped (it is
// not the program's); any other signal is raised again after detach.
func (t *tracer) withhold(tid int, sig unix.Signal) {
	if sig == unix.SIGSYS && sigCode(tid) == sysSeccomp {
		t.trapped++
		return
	}
	t.resignal = append(t.resignal, pendingSignal{tid: tid, sig: sig})
}

// sigCode returns si_code of the signal a thread is stopped for, -1 if
// unknown. The buffer's address is converted in the Syscall6 call itself:
// passed as a uintptr through a Go wrapper (ptraceRaw), the array stays on
// the goroutine stack, a stack growth in the wrapper's prologue moves it,
// and the kernel writes the siginfo into the old copy. si_code then read 0,
// and our own call's seccomp SIGSYS was taken for the program's and raised
// again after detach.
func sigCode(tid int) int32 {
	var si [128]byte
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETSIGINFO, uintptr(tid), 0, uintptr(unsafe.Pointer(&si[0])), 0, 0)
	if e != 0 {
		return -1
	}
	return int32(binary.LittleEndian.Uint32(si[8:12]))
}

// seccompTrapPending says whether a seccomp SIGSYS for our call waits in
// the thread's private queue (RET_TRAP raises it at the syscall's exit, to
// be delivered on the way back to user space: after our last call, that
// would be the program's handler or its death).
func seccompTrapPending(tid int) bool {
	args := struct {
		off   uint64
		flags uint32
		nr    int32
	}{nr: 8}
	var buf [8][128]byte
	n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKSIGINFO, uintptr(tid),
		uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(&buf[0][0])), 0, 0)
	if e != 0 {
		return true // cannot tell: settle, which costs two round trips
	}
	for i := 0; i < int(n) && i < len(buf); i++ {
		signo := binary.LittleEndian.Uint32(buf[i][0:4])
		code := int32(binary.LittleEndian.Uint32(buf[i][8:12]))
		if unix.Signal(signo) == unix.SIGSYS && code == sysSeccomp {
			return true
		}
	}
	return false
}

// stopAgain brings a thread that has left its stop, or is about to,
// back into a clean stop without letting it run any user code: interrupt,
// resume if it is stopped (running is false), and wait. Signals on the way
// are taken off (withhold), each with a renewed interrupt, so that the
// kernel traps again in the same signal loop. It returns nil at an
// interrupt stop or a syscall stop, errGone, or errNotStopped when the
// deadline passes (a thread in an uninterruptible or killable-only wait).
func (t *tracer) stopAgain(tid int, resume bool, deadline time.Time) error {
	if err := unix.PtraceInterrupt(tid); err != nil {
		if errors.Is(err, unix.ESRCH) && !resume {
			return errGone
		}
		if !errors.Is(err, unix.ESRCH) {
			return err
		}
	}
	if resume {
		if err := unix.PtraceCont(tid, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return errGone
			}
			return err
		}
	}
	for detours := 0; ; {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			t.threads[tid].state = gone
			return errGone
		case err != nil:
			return err
		case wpid == 0:
			if s := t.taskState(tid); s == "Z" || s == "X" || s == "gone" {
				t.threads[tid].state = gone
				return errGone
			}
			if time.Now().After(deadline) {
				t.threads[tid].state = running
				return errNotStopped
			}
			time.Sleep(200 * time.Microsecond)
			continue
		}
		if ws.Exited() || ws.Signaled() {
			t.threads[tid].state = gone
			return errGone
		}
		if !ws.Stopped() {
			continue
		}
		sig := ws.StopSignal()
		event := uint32(ws) >> 16
		if event == unix.PTRACE_EVENT_STOP || sig == unix.SIGTRAP|0x80 {
			t.threads[tid].state = stopped
			return nil
		}
		if detours++; detours > 16 {
			return fmt.Errorf("thread %d of pid %d keeps stopping unexpectedly", tid, t.pid)
		}
		if event == 0 && sig != unix.SIGTRAP {
			t.withhold(tid, sig)
		}
		if err := unix.PtraceInterrupt(tid); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
		if err := unix.PtraceCont(tid, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return errGone
			}
			return err
		}
	}
}

// deliverPending resumes a stopped thread without an interrupt, so that it
// dequeues a pending signal before it returns to user space, and drops or
// holds that signal at its delivery stop, then brings it back to an
// interrupt stop.
func (t *tracer) deliverPending(tid int, deadline time.Time) error {
	if err := unix.PtraceCont(tid, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return err
	}
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			t.threads[tid].state = gone
			return errGone
		case err != nil:
			return err
		case wpid == 0:
			if time.Now().After(deadline) {
				t.threads[tid].state = running
				return errNotStopped
			}
			time.Sleep(100 * time.Microsecond)
			continue
		}
		if ws.Exited() || ws.Signaled() {
			t.threads[tid].state = gone
			return errGone
		}
		if !ws.Stopped() {
			continue
		}
		if sig := ws.StopSignal(); uint32(ws)>>16 == 0 && sig != unix.SIGTRAP && sig != unix.SIGTRAP|0x80 {
			t.withhold(tid, sig)
			return t.stopAgain(tid, true, deadline)
		}
		// Any other stop is already a clean one.
		t.threads[tid].state = stopped
		return nil
	}
}

// detachAll lets every stopped thread go. Threads that never stopped cannot
// be detached from here; they are returned, and the kernel detaches them
// when this OS thread exits (it is never unlocked).
func (t *tracer) detachAll() (stragglers []int) {
	for _, tid := range t.order {
		th := t.threads[tid]
		switch th.state {
		case stopped:
			if err := unix.PtraceDetach(tid); err != nil && !errors.Is(err, unix.ESRCH) {
				t.log.Warn("detach failed", zap.Int("tid", tid), zap.Error(err))
			}
			th.state = gone
			if t.hook != nil {
				t.hook("detached-one")
			}
		case running:
			stragglers = append(stragglers, tid)
		}
	}
	for _, p := range t.resignal {
		// Raised again now that the thread runs normally; the original
		// sender's details are lost, the signal is not.
		if err := unix.Tgkill(t.pid, p.tid, p.sig); err == nil {
			t.notes = append(t.notes, fmt.Sprintf("signal %v that arrived during the release was raised again on thread %d", p.sig, p.tid))
		}
	}
	t.resignal = nil
	return stragglers
}

// drainStragglers waits for threads that did not stop before the deadline
// and detaches each as soon as it stops. It is only needed when this
// goroutine runs on the process's main thread, which Go never terminates.
func (t *tracer) drainStragglers(tids []int, limit time.Duration) {
	end := time.Now().Add(limit)
	for len(tids) > 0 && time.Now().Before(end) {
		left := tids[:0]
		for _, tid := range tids {
			var ws unix.WaitStatus
			wpid, err := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
			if err != nil && !errors.Is(err, unix.EINTR) {
				continue
			}
			if wpid == 0 || errors.Is(err, unix.EINTR) {
				left = append(left, tid)
				continue
			}
			if ws.Stopped() {
				// A signal-delivery stop keeps its signal.
				var sig uintptr
				if s := ws.StopSignal(); uint32(ws)>>16 == 0 && s != unix.SIGTRAP && s != unix.SIGTRAP|0x80 {
					sig = uintptr(s)
				}
				if err := ptraceRaw(unix.PTRACE_DETACH, tid, 0, sig); err != nil && !errors.Is(err, unix.ESRCH) {
					left = append(left, tid)
				}
			}
		}
		tids = left
		time.Sleep(10 * time.Millisecond)
	}
}
