package act

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// fakeProcess plays one process through the ladder: checks answers
// recheck in turn, exitOn says which signal ends it.
type fakeProcess struct {
	checks  []string // "gone", "" (may signal) or a reason
	exitOn  syscall.Signal
	sendErr error
	sent    []string
}

func (f *fakeProcess) pid() int { return 42 }

func (f *fakeProcess) recheck() (bool, string) {
	c := f.checks[0]
	if len(f.checks) > 1 {
		f.checks = f.checks[1:]
	}
	return c == "gone", map[bool]string{true: "", false: c}[c == "gone"]
}

func (f *fakeProcess) signal(sig syscall.Signal) error {
	f.sent = append(f.sent, sigName(sig))
	return f.sendErr
}

func (f *fakeProcess) waitExit(time.Duration) bool {
	return f.exitOn != 0 && sigName(f.exitOn) == f.sent[len(f.sent)-1]
}

func TestKillLadder(t *testing.T) {
	cases := []struct {
		name           string
		p              fakeProcess
		result, reason string
		signals        string
	}{
		{"ends on SIGTERM", fakeProcess{checks: []string{""}, exitOn: syscall.SIGTERM}, Done, "", "SIGTERM"},
		{"ignores SIGTERM", fakeProcess{checks: []string{""}, exitOn: syscall.SIGKILL}, Done, "", "SIGTERM SIGKILL"},
		{"exited before", fakeProcess{checks: []string{"gone"}}, Skipped, reasonExited, ""},
		{"another process now", fakeProcess{checks: []string{"pid 42 is another process now"}}, Skipped, "pid 42 is another process now", ""},
		{"exited during the grace", fakeProcess{checks: []string{"", "gone"}}, Done, "", "SIGTERM"},
		{"woke up during the grace", fakeProcess{checks: []string{"", "it is no longer blocked in the same read"}}, Skipped, "after SIGTERM it is no longer blocked in the same read", "SIGTERM"},
		{"gone at the signal", fakeProcess{checks: []string{""}, sendErr: syscall.ESRCH}, Done, "", "SIGTERM"},
		{"not permitted", fakeProcess{checks: []string{""}, sendErr: syscall.EPERM}, Failed, "SIGTERM: operation not permitted", "SIGTERM"},
		{"unkillable", fakeProcess{checks: []string{""}}, Failed, "still alive 5s after SIGKILL", "SIGTERM SIGKILL"},
	}
	for _, c := range cases {
		result, reason := end(&c.p, time.Millisecond, zap.NewNop())
		if result != c.result || !strings.HasPrefix(reason, c.reason) || strings.Join(c.p.sent, " ") != c.signals {
			t.Errorf("%s: %s %q after %v; want %s %q after %q", c.name, result, reason, c.p.sent, c.result, c.reason, c.signals)
		}
	}
}
