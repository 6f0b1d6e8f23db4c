//go:build linux

package procfs

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// dupWatched holds one PTY master under two fd numbers (dup) and registers
// only the second in an epoll set; a second master is dup'ed and not
// registered at all. Ready line: watched-original, watched-dup, plain,
// plain-dup, and a slave opened separately (another open file).
const dupWatched = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

int main(void) {
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	int p = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || p < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	int d = dup(m), pd = dup(p);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 42 };
	if (s < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, d, &ev)) { perror("setup"); return 1; }
	printf("ready %d %d %d %d %d\n", m, d, p, pd, s);
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof buf) > 0) {}
	return 0;
}
`

// An fd that is one open file with a watched fd is watched: the epoll
// registration belongs to the file, not to the number (issue 8 item 10:
// Node's pty.open() dups were reported unwatched).
func TestDupOfAWatchedFDIsWatched(t *testing.T) {
	bin := testproc.BuildC(t, "dupwatched", dupWatched)
	p := testproc.Start(t, bin)
	v := p.ReadyInts(t)
	snap, err := NewSource(zaptest.NewLogger(t)).Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	proc := snap.Process(p.PID)
	if proc == nil {
		t.Fatal("target not in the snapshot")
	}
	got := map[int]snapshot.PTYFD{}
	for _, f := range proc.PTYFDs {
		got[f.FD] = f
	}
	want := map[int]bool{v[0]: true, v[1]: true, v[2]: false, v[3]: false, v[4]: false}
	for fd, w := range want {
		f, ok := got[fd]
		if !ok {
			t.Errorf("fd %d not found as a PTY fd: %+v", fd, proc.PTYFDs)
			continue
		}
		if f.Watched != w {
			t.Errorf("fd %d (%s): watched=%v, want %v", fd, f.Side, f.Watched, w)
		}
	}
}

// kernelFactsSrc sets up four PTYs whose kernel facts differ, and prints
// "ready <m0> <m1> <m2> <m3> <child>":
//
//	m0: slave opened and closed again: nobody has it open (POLLHUP)
//	m1: slave never opened: the kernel cannot tell (no POLLHUP)
//	m2: slave held open by the child
//	m3: the child's controlling terminal (setsid, TIOCSCTTY), its fds closed
const kernelFactsSrc = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

static int openpt(void) {
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); exit(1); }
	return m;
}

int main(void) {
	int m0 = openpt(), m1 = openpt(), m2 = openpt(), m3 = openpt();
	close(open(ptsname(m0), O_RDWR | O_NOCTTY));
	int go[2];
	if (pipe(go)) return 1;
	pid_t c = fork();
	if (c == 0) {
		int s2 = open(ptsname(m2), O_RDWR | O_NOCTTY);
		setsid();
		int s3 = open(ptsname(m3), O_RDWR);
		if (s2 < 0 || s3 < 0 || ioctl(s3, TIOCSCTTY, 0)) { perror("child"); _exit(1); }
		close(s3);
		close(go[0]);
		write(go[1], "x", 1);
		for (;;) pause();
	}
	char b;
	close(go[1]);
	if (read(go[0], &b, 1) != 1) return 1;
	printf("ready %d %d %d %d %d\n", m0, m1, m2, m3, c);
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof buf) > 0) {}
	kill(c, 9);
	return 0;
}
`

// The kernel facts read on a master copy, checked against PTYs whose state
// the test set up itself.
func TestKernelFactsOfMasters(t *testing.T) {
	bin := testproc.BuildC(t, "kernelfacts", kernelFactsSrc)
	p := testproc.Start(t, bin)
	v := p.ReadyInts(t)
	t.Cleanup(func() { _ = syscall.Kill(v[4], syscall.SIGKILL) })
	snap, err := NewSource(zaptest.NewLogger(t)).Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	proc := snap.Process(p.PID)
	if proc == nil {
		t.Fatal("target not in the snapshot")
	}
	facts := map[int]snapshot.PTY{}
	for _, f := range proc.PTYFDs {
		if info := snap.PTYs[f.PTY]; info != nil && f.Side == snapshot.Master {
			facts[f.FD] = *info
		}
	}
	for i, want := range []struct {
		closed  bool
		session int
	}{{true, 0}, {false, 0}, {false, 0}, {true, v[4]}} {
		got, ok := facts[v[i]]
		if !ok {
			t.Errorf("m%d (fd %d) not found", i, v[i])
			continue
		}
		if !got.KernelChecked || got.SlaveClosed != want.closed || got.Session != want.session {
			t.Errorf("m%d (fd %d): checked %v, slave closed %v, session %d; want closed %v, session %d",
				i, v[i], got.KernelChecked, got.SlaveClosed, got.Session, want.closed, want.session)
		}
	}
}

// heldTwiceSrc opens a master, forks a child that inherits it, and prints
// "ready <m> <child>"; on a line in, it closes its own copy.
const heldTwiceSrc = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
	pid_t c = fork();
	if (c == 0) { for (;;) pause(); }
	printf("ready %d %d\n", m, c);
	fflush(stdout);
	char buf[64];
	if (read(0, buf, sizeof buf) > 0) close(m);
	printf("closed\n");
	fflush(stdout);
	while (read(0, buf, sizeof buf) > 0) {}
	return 0;
}
`

// A slave node goes only with the master's open file: while a second
// process still holds the master, it is there (not gone); once nobody
// does, it is gone. This is what a release's proof leans on when some
// processes cannot be read.
func TestNodesGoneOnlyWithTheMastersLastHolder(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "heldtwice", heldTwiceSrc))
	v := p.ReadyInts(t)
	child := v[1]
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	src := NewSource(zaptest.NewLogger(t))
	snap, err := src.Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var id snapshot.PTYID
	for _, f := range snap.Process(p.PID).PTYFDs {
		if f.FD == v[0] {
			id = f.PTY
		}
	}
	if id.Index == 0 && id.Instance == 0 {
		t.Fatalf("master fd %d not in the snapshot", v[0])
	}
	nodes := []snapshot.PTYNode{{Holder: p.PID, PTY: id}}
	gone := func(what string) bool {
		t.Helper()
		s, err := src.Take(context.Background(), snapshot.Options{Nodes: nodes})
		if err != nil {
			t.Fatal(err)
		}
		g, known := s.NodesGone[id]
		if !known {
			t.Fatalf("%s: not known", what)
		}
		return g
	}
	if gone("both hold it") {
		t.Fatal("node gone while two processes hold the master")
	}
	p.Stdin.Write([]byte("close\n"))
	if l := <-p.Lines; l != "closed" {
		t.Fatalf("target: %q", l)
	}
	if gone("the child holds it") {
		t.Fatal("node gone while the child still holds the master")
	}
	if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !gone("nobody holds it") {
		if time.Now().After(deadline) {
			t.Fatal("node still there after the master's last holder exited")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The walk of a process's /dev/pts/N never follows a symlink, at any
// component, absolute or relative: a user's root may point dev or pts at
// root's own tree (or at her FUSE mount).
func TestWalkNoFollowRefusesSymlinks(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(root+"/ok/dev/pts", 0o755))
	must(os.WriteFile(root+"/ok/dev/pts/3", nil, 0o644))
	must(os.MkdirAll(root+"/linkdev", 0o755))
	must(os.Symlink("/dev", root+"/linkdev/dev")) // absolute, into our own /dev
	must(os.MkdirAll(root+"/linkpts/dev", 0o755))
	must(os.Symlink("../ok/dev/pts", root+"/linkpts/dev/pts"))
	must(os.MkdirAll(root+"/linknode/dev/pts", 0o755))
	must(os.Symlink("/dev/null", root+"/linknode/dev/pts/3"))
	for dir, ok := range map[string]bool{"ok": true, "linkdev": false, "linkpts": false, "linknode": false} {
		d, err := unix.Open(root+"/"+dir, unix.O_PATH|unix.O_DIRECTORY, 0)
		must(err)
		fd, err := walkNoFollow(d, "dev", "pts", "3")
		unix.Close(d)
		if ok != (err == nil) {
			t.Errorf("%s: fd %d, err %v; want success %v", dir, fd, err, ok)
		}
		if err == nil {
			unix.Close(fd)
		}
	}
}
