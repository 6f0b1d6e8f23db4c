package act

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// process is one process as the kill ladder sees it. Linux pins it with a
// pidfd; macOS, which has none, checks pid and start time before each
// signal.
type process interface {
	// pid is for the log.
	pid() int
	// recheck says whether the process has exited (gone) and, if not,
	// why it must not be signalled now ("" when it may): another process
	// under the pid, or no longer in the state that justified ending it.
	recheck() (gone bool, why string)
	// signal sends sig; syscall.ESRCH when the process is gone.
	signal(sig syscall.Signal) error
	// waitExit waits up to d for the process to exit, true when it did.
	waitExit(d time.Duration) bool
}

// killTimeout is how long a SIGKILLed process gets to be gone.
const killTimeout = 5 * time.Second

// end is the one kill ladder: SIGTERM, the grace period, then SIGKILL,
// with the process checked again before each signal.
func end(p process, grace time.Duration, log *zap.Logger) (result, reason string) {
	gone, why := p.recheck()
	switch {
	case gone:
		return Skipped, reasonExited
	case why != "":
		return Skipped, why
	}
	if result, reason, done := send(p, syscall.SIGTERM, grace, log); done {
		return result, reason
	}
	// Still there after the grace period: only a process that is still the
	// same one, in the same state, gets SIGKILL.
	gone, why = p.recheck()
	switch {
	case gone:
		return Done, ""
	case why != "":
		return Skipped, "after SIGTERM " + why
	}
	if result, reason, done := send(p, syscall.SIGKILL, killTimeout, log); done {
		return result, reason
	}
	return Failed, "still alive 5s after SIGKILL (in uninterruptible sleep?)"
}

// send signals p and waits up to d for its exit; done is false when it is
// still alive.
func send(p process, sig syscall.Signal, d time.Duration, log *zap.Logger) (result, reason string, done bool) {
	if err := p.signal(sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return Done, "", true
		}
		return Failed, fmt.Sprintf("%s: %v", sigName(sig), err), true
	}
	log.Debug("signal sent", zap.Int("pid", p.pid()), zap.String("signal", sigName(sig)))
	if p.waitExit(d) {
		return Done, "", true
	}
	return "", "", false
}

const reasonExited = "it already exited"

func sigName(sig syscall.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGKILL:
		return "SIGKILL"
	}
	return fmt.Sprintf("signal %d", int(sig))
}
