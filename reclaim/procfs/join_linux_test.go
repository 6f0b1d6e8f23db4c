//go:build linux

package procfs

import (
	"context"
	"testing"

	"go.uber.org/zap/zaptest"

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
