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

import "time"

// Method is how a leaked fd is released.
type Method string

// The release methods.
const (
	// MethodDevNull points the fd number at /dev/null, so that the program's
	// own later close(fd) cannot close an unrelated file that reused the number.
	MethodDevNull Method = "devnull"
	// MethodClose closes the fd.
	MethodClose Method = "close"
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

	// hook, set only by this package's tests, is called at named points
	// of a release (where a test kills the releaser).
	hook func(point string)
}

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
}

// Report says what one Reclaim did.
type Report struct {
	FDs []FDResult
	// Threads is how many threads were frozen.
	Threads int
	// Frozen runs from the first thread stopped to the last one detached.
	Frozen time.Duration
	// Notes are remarks a person should see (signals passed on, a scratch
	// page that could not be unmapped, ...).
	Notes []string
	// CrashSafe is true when every instant at which the target was
	// changed was covered by a restore frame in its memory: had
	// ptyreclaim died at any point, the target would have returned to
	// exactly its state by itself. CrashSafeReason says why not.
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
