// Package inject releases leaked PTY fds inside a running process.
//
// Nothing outside a process can free a PTY it holds, so the injector freezes
// every thread of the target with ptrace, proves each fd still names the file
// that was examined, runs openat/dup3/close (or close) on one stopped thread,
// restores that thread exactly and lets the process go. The protocol is in
// design/injection.md; this package follows it step by step.
//
// Only Linux can do this. On other systems Preflight and Reclaim refuse.
package inject

import (
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
)

// Method is how a leaked fd is released: policy.Method, the one
// vocabulary from the policy file to the action records. The names below
// are the same values, for the injector's own code.
type Method = policy.Method

// The release methods (see policy.Method*).
const (
	// MethodDevNull points the fd number at /dev/null, so that the program's
	// own later close(fd) cannot close an unrelated file that reused the number.
	MethodDevNull = policy.MethodDevNull
	// MethodClose closes the fd.
	MethodClose = policy.MethodClose
	// MethodHangup points the fd at one end of a Unix stream socket pair
	// that is shut down for reading, whose other end stays open, hidden,
	// in the target: reads return EOF, poll reports readable and RDHUP,
	// writes are accepted (never SIGPIPE) until the buffer is full, as a
	// hung-up PTY master's are. To an event loop it looks like a real
	// hang-up, so the program runs its own close path. Every epoll
	// registration of the old file in the process is moved to it, with the
	// same events and data. It costs the target one extra fd per release.
	MethodHangup = policy.MethodHangup
	// MethodQuiet points the fd at one end of a Unix stream socket pair
	// whose other end stays open, hidden, in the target: pollable, never
	// readable, writes accepted until the socket buffer is full (then it
	// blocks or says EAGAIN, like a terminal nobody reads). Epoll
	// registrations are moved as for MethodHangup. It costs the target one
	// extra fd per release.
	MethodQuiet = policy.MethodQuiet
)

// Values of Report.Restore.
const (
	// RestoreUntouched: nothing was written to the target.
	RestoreUntouched = "untouched"
	// RestoreDone: the injecting thread's registers and signal mask were
	// put back exactly as saved.
	RestoreDone = "restored"
	// RestoreNotDone: the thread could not be restored (it is still inside
	// an injected call that did not return and did not stop when
	// interrupted, or setting its registers failed). The error says what
	// state it was left in.
	RestoreNotDone = "not restored"
	// RestoreGone: the target exited during the release.
	RestoreGone = "exited"
)

// Per-fd outcomes in FDResult.Result.
const (
	ResultDone    = "done"
	ResultSkipped = "skipped"
	ResultFailed  = "failed"
)

// Target names what to do in one process.
type Target struct {
	PID int
	// StartTime is /proc/PID/stat field 22 as seen when the fds were
	// examined. It is re-checked after the freeze: a mismatch aborts (the pid
	// was reused). Zero skips the check.
	StartTime uint64
	FDs       []int
	// Method defaults to MethodDevNull.
	Method Method
	// Methods, when it names an fd, overrides Method for that fd (watched
	// fds get a pollable method, the others devnull or close). Fds that
	// share one open file must be given the same method.
	Methods map[int]Method
	// Precheck, if set, runs before the freeze on our reference copy of each
	// fd (which the freeze will prove is still the fd): checks that need no
	// freeze belong here, to keep the freeze short. An error skips the fd.
	Precheck func(fd, copy int) error
	// Recheck, if set, runs while every thread is frozen, after the kcmp
	// checks; an error for an fd skips that fd (for example "a new process
	// opened the slave"). copy is our reference copy of the fd, which kcmp
	// has just proven to be the same open file: inspect it rather than
	// taking another copy, to keep the freeze short. Rechecks of different
	// fds may run concurrently.
	Recheck func(fd, copy int) error
	// StopTimeout bounds how long one thread may take to stop; a thread in
	// uninterruptible sleep that does not stop in time aborts the release.
	// Zero means DefaultStopTimeout.
	StopTimeout time.Duration
	// CallTimeout bounds one injected call (a seccomp supervisor or a FUSE
	// server may never answer); the thread is then interrupted, and
	// restored if it stops. Zero means DefaultCallTimeout.
	CallTimeout time.Duration

	// hook, set only by this package's tests, is called at named points
	// of a release (where a test kills the releaser).
	hook func(point string)
	// pauseTimeout, set only by tests, replaces how long the crash-safe
	// routine waits for the tracer at a pause.
	pauseTimeout time.Duration
}

// DefaultCallTimeout is the call deadline used when Target.CallTimeout is 0.
const DefaultCallTimeout = 10 * time.Second

// DefaultStopTimeout is the stop deadline used when Target.StopTimeout is 0.
const DefaultStopTimeout = 2 * time.Second

// FDResult is the outcome for one fd.
type FDResult struct {
	FD     int
	Result string // ResultDone, ResultSkipped or ResultFailed
	// Method is what was actually used (close when devnull fell back).
	Method Method
	// Reason is empty when done as asked; otherwise why it was skipped or
	// failed, or what changed ("fell back to close: target at its fd limit").
	Reason string
	// Replacement is what the fd names after a done release other than
	// close, as /proc/PID/fd shows it ("/dev/null",
	// "socket:[456]"), proven by kcmp against our own copy.
	Replacement string
	// Epoll is how many epoll registrations were moved to the replacement.
	Epoll int
}

// Report says what one Reclaim did.
type Report struct {
	FDs []FDResult
	// Threads is how many threads were frozen.
	Threads int
	// Frozen runs from the first thread stopped to the last one detached.
	Frozen time.Duration
	// Restore says whether the injecting thread was put back exactly
	// (RestoreUntouched, RestoreDone, RestoreNotDone, RestoreGone). Never
	// RestoreDone unless setting its registers and mask succeeded.
	Restore string
	// Notes are remarks a person should see (signals passed on, a scratch
	// page that could not be unmapped, ...).
	Notes []string
	// CrashSafe is true when every instant at which the target was
	// changed was covered by a restore frame in its memory: had
	// ptyreclaim died at any point, the target would have finished the
	// release (or none of it) and returned to exactly its state by
	// itself. CrashSafeReason says why not (the call-by-call path was
	// used, and why).
	CrashSafe       bool
	CrashSafeReason string
}

// Done returns how many fds were released.
func (r Report) Done() int {
	n := 0
	for _, f := range r.FDs {
		if f.Result == ResultDone {
			n++
		}
	}
	return n
}
