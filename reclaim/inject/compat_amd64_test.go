//go:build linux && amd64

package inject

import (
	"context"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func start32(t *testing.T) *exec.Cmd {
	t.Helper()
	path := t.TempDir() + "/t32"
	out, err := exec.Command("gcc", "-m32", "-nostdlib", "-static", "-O1", "-o", path, "testdata/t32.c").CombinedOutput()
	if err != nil {
		t.Fatalf("building a 32-bit target: %v\n%s", err, out)
	}
	cmd := exec.Command(path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func TestRefuses32BitProcess(t *testing.T) {
	cmd := start32(t)
	pid := cmd.Process.Pid
	err := Preflight(pid)
	if err == nil || !strings.Contains(err.Error(), "32-bit") {
		t.Fatalf("Preflight: %v", err)
	}
	if _, err := Reclaim(context.Background(), Target{PID: pid, FDs: []int{0}}, testLogger(t)); err == nil {
		t.Fatal("Reclaim of a 32-bit process succeeded")
	}
}

// TestGetRegsSees32Bit checks the second line of defence: after the seize,
// a compat thread's register set is recognised and refused.
func TestGetRegsSees32Bit(t *testing.T) {
	cmd := start32(t)
	pid := cmd.Process.Pid
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: its exit detaches the target
		tr := newTracer(pid, testLogger(t))
		if err := tr.freeze(time.Now().Add(5 * time.Second)); err != nil {
			done <- err
			return
		}
		_, err := getRegs(pid)
		tr.detachAll()
		done <- err
	}()
	if err := <-done; err != errCompat {
		t.Fatalf("getRegs on a 32-bit thread: %v, want errCompat", err)
	}
	if s := threadsStopped(pid); len(s) > 0 {
		t.Errorf("left stopped: %v", s)
	}
	if err := unix.Kill(pid, 0); err != nil {
		t.Errorf("target gone: %v", err)
	}
}
