//go:build darwin

package libproc

// These tests read the live machine and only run on a Mac. The decoders and
// the mapping are covered on every platform by the fixture tests.

import (
	"context"
	"os"
	"os/exec"
	"reflect"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// openMaster opens a PTY master and returns its fd and PTY index (minor of
// its rdev, which must match what libproc reports).
func openMaster(t *testing.T) (int, int) {
	t.Helper()
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("open /dev/ptmx: %v (pool exhausted?)", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return fd, int(Minor(uint32(st.Rdev)))
}

func TestLiveMastersAndWatch(t *testing.T) {
	watchedFD, watchedIdx := openMaster(t)
	plainFD, plainIdx := openMaster(t)

	kq, err := unix.Kqueue()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(kq)
	ev := []unix.Kevent_t{{Ident: uint64(watchedFD), Filter: unix.EVFILT_READ, Flags: unix.EV_ADD}}
	if _, err := unix.Kevent(kq, ev, nil, nil); err != nil {
		t.Fatal(err)
	}

	snap, err := NewSource(zaptest.NewLogger(t)).Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pool %+v, notes %q", snap.Pool, snap.Notes)
	if snap.Pool.Limit == 0 || snap.Pool.InUse < 2 {
		t.Errorf("pool %+v: want kern.tty.ptmx_max and at least our two PTYs", snap.Pool)
	}
	self := snap.Process(os.Getpid())
	if self == nil {
		t.Fatal("own process missing")
	}
	got := map[int]snapshot.PTYFD{}
	for _, fd := range self.PTYFDs {
		got[fd.FD] = fd
	}
	w, p := got[watchedFD], got[plainFD]
	if w.Side != snapshot.Master || w.PTY.Index != watchedIdx || !w.Proven || !w.Watched {
		t.Errorf("watched master: got %+v, want index %d, watched", w, watchedIdx)
	}
	if p.Side != snapshot.Master || p.PTY.Index != plainIdx || !p.Proven || p.Watched {
		t.Errorf("plain master: got %+v, want index %d, not watched", p, plainIdx)
	}
	if pty := snap.PTYs[p.PTY]; pty == nil || pty.Name != ptyName(plainIdx) {
		t.Errorf("PTY entry %+v, want name %s", pty, ptyName(plainIdx))
	}
	if self.StartTime == 0 || self.Exe == "" || self.Threads < 1 {
		t.Errorf("self: %+v", self)
	}
}

// A child blocked reading a pipe whose only write end it holds itself (seed
// 002). Proof needs every process readable, so only as root.
func TestLiveStuckChild(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("stuck-child proofs need root (every pipe writer must be visible)")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/cat")
	cmd.Stdin = r
	cmd.ExtraFiles = []*os.File{w} // the child keeps the write end as fd 3
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	time.Sleep(300 * time.Millisecond) // let cat reach read()

	pid := cmd.Process.Pid
	snap, err := NewSource(zaptest.NewLogger(t)).Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	child := snap.Process(pid)
	if child == nil || child.Blocked == nil {
		t.Fatalf("child %+v not proven blocked; notes %q", child, snap.Notes)
	}
	if child.Blocked.FD != 0 {
		t.Errorf("blocked on fd %d, want 0", child.Blocked.FD)
	}
	if got := snap.PipeWriters[child.Blocked.Pipe]; !reflect.DeepEqual(got, []int{pid}) {
		t.Errorf("writers %v, want only the child", got)
	}
}

func TestLiveInPlaceSelf(t *testing.T) {
	ok, reason := InPlaceReclaimPossible(os.Getpid())
	t.Logf("self: %v, %s", ok, reason)
	if reason == "" {
		t.Error("no reason given")
	}
	if ok, reason := InPlaceReclaimPossible(1); ok {
		t.Errorf("launchd: got possible (%s), want refused (platform binary)", reason)
	}
}
