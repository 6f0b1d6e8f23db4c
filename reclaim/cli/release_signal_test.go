//go:build linux

package cli

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// SIGINT, SIGTERM or SIGHUP at any moment of `release` (before, during and
// after the freeze) must never end it mid-release: ptyreclaim finishes the
// process it froze, restores it and exits by itself (never by the
// signal's default action), and the target is left with all its leaked
// masters released or none, not traced, not stopped, its mask as before,
// still working.
func TestReleaseFinishesTheFrozenTargetOnSignals(t *testing.T) {
	bin := buildForNobody(t)
	leak := testproc.BuildC(t, "leak", testproc.LeakMasters)
	sigs := []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}
	// The scan takes tens of ms, the freeze a few: steps through both,
	// and rounds that signal the moment the target is seen traced.
	const whenTraced = -1
	var delays []time.Duration
	for ms := 0; ms <= 60; ms += 5 {
		delays = append(delays, time.Duration(ms))
	}
	for range 6 {
		delays = append(delays, whenTraced)
	}
	outcomes := map[string]int{}
	round := 0
	for _, sig := range sigs {
		for _, delay := range delays {
			round++
			when := fmt.Sprintf("%v after %dms", sig, delay)
			if delay == whenTraced {
				when = fmt.Sprintf("%v once frozen", sig)
			}
			target := testproc.Start(t, leak, "300", "2")
			sigBlk := statusField(t, target.PID, "SigBlk")
			cmd := exec.Command(bin, "release", "--yes", "--min-idle", "0s", "--json", "--pid", strconv.Itoa(target.PID))
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			midFreeze := false
			if delay == whenTraced {
				for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
					select {
					case <-done:
						deadline = time.Time{}
						continue
					default:
					}
					if statusField(t, target.PID, "TracerPid") != "0" {
						outcomes["signalled mid-freeze"]++
						midFreeze = true
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
			} else {
				time.Sleep(delay * time.Millisecond)
			}
			cmd.Process.Signal(sig)
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatalf("round %d (%s): release did not end", round, when)
			}
			// Before the handlers are in place (Go's start-up, the
			// command line) a signal may end ptyreclaim: nothing has
			// been touched then. Never once the work began.
			killed := cmd.ProcessState.Sys().(syscall.WaitStatus).Signaled()
			masters := len(ptmxFDs(t, target.PID))
			if killed && (midFreeze || masters != 300) {
				t.Errorf("round %d (%s): release was killed by the signal mid-run (%d masters left): %s", round, when, masters, firstLine(errb.String()))
			}
			if killed {
				outcomes["killed before starting"]++
			}
			switch masters {
			case 300:
				outcomes["untouched"]++
			case 0:
				outcomes["released"]++
			default:
				t.Errorf("round %d (%s): %d of 300 masters left: a release was cut in half", round, when, masters)
			}
			if st := statusField(t, target.PID, "State"); strings.HasPrefix(st, "t") || strings.HasPrefix(st, "T") {
				t.Errorf("round %d (%s): target left %s", round, when, st)
			}
			if tp := statusField(t, target.PID, "TracerPid"); tp != "0" {
				t.Errorf("round %d (%s): target still traced by %s", round, when, tp)
			}
			if got := statusField(t, target.PID, "SigBlk"); got != sigBlk {
				t.Errorf("round %d (%s): SigBlk %s, was %s", round, when, got, sigBlk)
			}
			echoes(t, target, fmt.Sprint("round ", round))
			syscall.Kill(target.PID, syscall.SIGKILL)
			waitGone(t, target.PID)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes["released"] == 0 || outcomes["untouched"] == 0 || outcomes["signalled mid-freeze"] == 0 {
		t.Error("the sweep missed the release: want rounds before, during and after it")
	}
}
