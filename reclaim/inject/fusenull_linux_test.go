//go:build linux

package inject

import (
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// nullHolderSrc opens /dev/null (whatever that is in its mount namespace),
// a socket pair and a pipe, and prints "ready <null fd> <socket end> <pipe
// read end>".
const nullHolderSrc = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

int main(void) {
	int n = open("/dev/null", O_RDWR);
	int p[2], s[2];
	if (n < 0 || pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, s)) { perror("open"); return 1; }
	printf("ready %d %d %d\n", n, s[0], p[0]);
	fflush(stdout);
	for (;;) pause();
}
`

// A user mounts her FUSE file on /dev/null in her own mount namespace: the
// "/dev/null" the injector opens in her process links to "/dev/null" but is
// her server's file, and closing a copy of it would wait on her server's
// flush forever. The replacement is proven from fdinfo and the mount table
// before any copy: refused, and her server is asked nothing. The real
// /dev/null (inherited from before the mount, fd 7) and a socket (the
// hangup and quiet replacements) pass; a pipe is no pollable replacement.
func TestReplacementCopyRefusesFUSEOnDevNull(t *testing.T) {
	uid, gid := testproc.TestUser(t, "ptyreclaim-null")
	fs := testproc.StartHostileFUSE(t, uid, gid)
	holder := testproc.BuildC(t, "nullholder", nullHolderSrc)
	testproc.OpenToAll(t, holder)
	script := "exec 7</dev/null && mount --bind " + fs.Dir + "/code /dev/null && exec " + holder
	p := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command("unshare", "-Urm", "sh", "-c", script)))
	t.Cleanup(fs.Stop) // before the holder's end: its exit would flush the FUSE file
	v := p.ReadyInts(t)
	fuseNull, sockEnd, pipeEnd := v[0], v[1], v[2]
	if l, _ := testproc.FDLink(p.PID, fuseNull); l != "/dev/null" {
		t.Fatalf("the holder's fd %d links to %q, want /dev/null", fuseNull, l)
	}
	pidfd, err := unix.PidfdOpen(p.PID, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	before := len(fs.Requests())

	cp, link, err := copyReplacement(p.PID, pidfd, fuseNull, MethodDevNull)
	if err == nil {
		t.Fatalf("copied the FUSE file at /dev/null (%q) as fd %d", link, cp)
	}
	if !strings.Contains(err.Error(), "fuse") {
		t.Errorf("refusal does not say why: %v", err)
	}
	if asked := fs.Requests()[before:]; len(asked) != 0 {
		t.Errorf("the user's server was asked %q", asked)
	}

	for _, c := range []struct {
		fd int
		m  Method
	}{{7, MethodDevNull}, {sockEnd, MethodHangup}, {sockEnd, MethodQuiet}} {
		cp, link, err := copyReplacement(p.PID, pidfd, c.fd, c.m)
		if err != nil {
			t.Errorf("fd %d (%s) refused: %v", c.fd, link, err)
			continue
		}
		unix.Close(cp)
	}
	for _, m := range []Method{MethodHangup, MethodQuiet} {
		if _, _, err := copyReplacement(p.PID, pidfd, pipeEnd, m); err == nil {
			t.Errorf("a pipe accepted as the %s socket", m)
		}
		if _, _, err := copyReplacement(p.PID, pidfd, 7, m); err == nil {
			t.Errorf("/dev/null accepted as the %s socket", m)
		}
	}
	if asked := fs.Requests()[before:]; len(asked) != 0 {
		t.Errorf("the user's server was asked %q", asked)
	}
}
