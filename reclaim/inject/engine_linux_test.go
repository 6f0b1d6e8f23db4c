//go:build linux && amd64

package inject

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openIn has a cstate target open k masters (and a dup of each).
func openIn(t *testing.T, tg *target, k int, mask string) []int {
	t.Helper()
	tg.send(fmt.Sprintf("OPEN %d %s", k, mask))
	var fds []int
	for _, s := range strings.Fields(tg.expect("FDS"))[1:] {
		fd, _ := strconv.Atoi(s)
		fds = append(fds, fd)
	}
	return fds
}

func checkState(t *testing.T, tg *target) {
	t.Helper()
	tg.send("CHECK")
	if ok := strings.Fields(tg.expect("OK")); len(ok) != 4 || ok[3] != "0" {
		t.Fatalf("target reports %v", ok)
	}
	if s := tg.eintrLines(); len(s) > 0 {
		t.Errorf("target saw EINTR %v", s)
	}
	if s := threadsStopped(tg.pid); len(s) > 0 || tracerOf(tg.pid) != 0 {
		t.Errorf("left stopped %v or traced by %d", s, tracerOf(tg.pid))
	}
}

// Where the target forbids new executable memory, the engine does not
// make any: a seccomp filter that refuses mprotect PROT_EXEC (systemd's
// MemoryDenyWriteExecute) is read and obeyed before anything is written;
// PR_SET_MDWE shows when mprotect fails, and the scratch mapping is
// removed again. Either way the release is made call by call, and the
// report says it was not crash-safe, and why.
func TestEngineObeysNoNewExecutableMemory(t *testing.T) {
	t.Run("seccomp", func(t *testing.T) {
		tg, methods, efd := filteredTarget(t, "mprotect-exec", "errno")
		blk := sigBlk(t, tg.pid)
		rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: tg.readyFDs(), Methods: methods}, testLogger(t))
		if err != nil || rep.Done() != 4 || rep.Restore != RestoreDone {
			t.Fatalf("err %v report %+v", err, rep)
		}
		if rep.CrashSafe || !strings.Contains(rep.CrashSafeReason, "executable memory") {
			t.Errorf("crash-safe %v: %q", rep.CrashSafe, rep.CrashSafeReason)
		}
		checkHonest(t, tg, rep, methods, efd)
		checkIntact(t, tg, blk)
	})
	t.Run("PR_SET_MDWE", func(t *testing.T) {
		tg := startTarget(t, program(t, "cstate"), "-M")
		fds := openIn(t, tg, 2, "00")
		vm := mappedSize(t, tg.pid)
		rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: fds}, testLogger(t))
		if err != nil || rep.Done() != 4 || rep.Restore != RestoreDone {
			t.Fatalf("err %v report %+v", err, rep)
		}
		if rep.CrashSafe || !strings.Contains(rep.CrashSafeReason, "executable memory") {
			t.Errorf("crash-safe %v: %q", rep.CrashSafe, rep.CrashSafeReason)
		}
		for _, fd := range fds {
			if l := tg.fdLink(fd); l != "/dev/null" {
				t.Errorf("fd %d is %q", fd, l)
			}
		}
		if got := mappedSize(t, tg.pid); got != vm {
			t.Errorf("mapped size %d -> %d: the scratch mapping was left", vm, got)
		}
		checkState(t, tg)
	})
}

// A thread that was in a call restarted through restart_syscall
// (clock_nanosleep) must not see EINTR: rt_sigreturn would reset the
// restart, so a live tracer restores it directly, and the frame restarts
// the original call instead for the case where ptyreclaim dies.
func TestEngineRestartedSleepSeesNoEINTR(t *testing.T) {
	tg := startTarget(t, program(t, "sleeper"), "8")
	fds := tg.readyFDs()
	time.Sleep(50 * time.Millisecond)
	rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: fds[:4]}, testLogger(t))
	if err != nil || rep.Done() != 4 || !rep.CrashSafe || rep.Restore != RestoreDone {
		t.Fatalf("err %v report %+v", err, rep)
	}
	time.Sleep(450 * time.Millisecond)
	if s := tg.eintrLines(); len(s) > 0 {
		t.Errorf("after the release with the tracer alive, the sleep returned EINTR %d times", len(s))
	}
	// And with the releaser killed after the routine released the rest.
	spec := []string{}
	for _, fd := range fds[4:] {
		spec = append(spec, fmt.Sprintf("%d=devnull", fd))
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s verify 100", releaserEnv, tg.pid, strings.Join(spec, ",")))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(cmd.Process.Pid, &ws, syscall.WUNTRACED, nil); err != nil || !ws.Stopped() {
		t.Fatalf("releaser did not stop at verify: %v %v", ws, err)
	}
	syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	count := func() int {
		tg.send("COUNT")
		f := strings.Fields(tg.expect("COUNT"))
		n, _ := strconv.Atoi(f[1])
		return n
	}
	before := count()
	for end := time.Now().Add(5 * time.Second); count() < before+3; {
		if time.Now().After(end) {
			t.Fatal("the sleeping thread does not sleep any more")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, fd := range fds {
		if l := tg.fdLink(fd); l != "/dev/null" {
			t.Errorf("fd %d is %q", fd, l)
		}
	}
	if s := tg.eintrLines(); len(s) > 0 {
		t.Errorf("after the release the tracer died in, the sleep returned EINTR %d times in all", len(s))
	}
}

// A tracer slower than the pause timeout (descheduled, a loaded machine)
// finds the routine gone on by itself: through its cleanup to its final
// pause, or all the way out through the frame. Either way nothing is
// released, the thread is back exactly as it was, and the report says so.
func TestEngineTracerSlowerThanThePause(t *testing.T) {
	for _, nap := range []time.Duration{80 * time.Millisecond, 300 * time.Millisecond} {
		t.Run(nap.String(), func(t *testing.T) {
			tg := startTarget(t, program(t, "cstate"), "-t", "1")
			fds := openIn(t, tg, 2, "01")
			first := true
			hook := func(p string) {
				if p == "pause-seen" && first {
					first = false
					time.Sleep(nap)
				}
			}
			methods := map[int]Method{fds[2]: MethodHangup, fds[3]: MethodHangup}
			rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: fds, Methods: methods, hook: hook, pauseTimeout: 50 * time.Millisecond}, testLogger(t))
			t.Logf("err %v; restore %s; notes %v", err, rep.Restore, rep.Notes)
			if err == nil || !strings.Contains(err.Error(), "by itself") || rep.Restore != RestoreDone || rep.Done() != 0 {
				t.Fatalf("err %v report %+v", err, rep)
			}
			for _, fd := range fds {
				if l := tg.fdLink(fd); l != "/dev/ptmx" {
					t.Errorf("fd %d is %q", fd, l)
				}
			}
			checkState(t, tg)
			tg.echo("after")
		})
	}
}
