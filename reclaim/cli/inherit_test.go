package cli

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// inheritor is node-pty's leak by inheritance, in C: the parent opens 5
// PTYs without O_CLOEXEC and, after each, forks a long-lived child. Like
// forkpty's child, child i closes its own master and keeps every other fd
// it inherited: the masters and slaves of the earlier PTYs and its own
// slave, all the parent's open files. Child argv[1] makes its PTY its
// controlling terminal and answers on it: a live session. The parent then
// forgets them all and only answers "ping" on stdin by a round trip
// through the live PTY. Ready line: the 5 PTY indices, the 5 child pids,
// then for the live PTY the parent's master fd and the child's slave fd.
const inheritor = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int live = atoi(argv[1]);
	int m[5], s[5], idx[5], pid[5];
	for (int i = 0; i < 5; i++) {
		m[i] = posix_openpt(O_RDWR | O_NOCTTY); /* no O_CLOEXEC, as node-pty */
		if (m[i] < 0 || grantpt(m[i]) || unlockpt(m[i])) { perror("openpt"); return 1; }
		if (ioctl(m[i], TIOCGPTN, &idx[i])) { perror("TIOCGPTN"); return 1; }
		s[i] = open(ptsname(m[i]), O_RDWR | O_NOCTTY);
		if (s[i] < 0) { perror("open slave"); return 1; }
		pid[i] = fork();
		if (pid[i] < 0) { perror("fork"); return 1; }
		if (pid[i] == 0) {
			close(m[i]);
			if (i != live) for (;;) pause();
			setsid();
			if (ioctl(s[i], TIOCSCTTY, 0)) { perror("TIOCSCTTY"); _exit(1); }
			char buf[256];
			for (;;) {
				ssize_t n = read(s[i], buf, sizeof buf);
				if (n <= 0) _exit(3);
				if (write(s[i], "pong\n", 5) != 5) _exit(4);
			}
		}
	}
	printf("ready");
	for (int i = 0; i < 5; i++) printf(" %d", idx[i]);
	for (int i = 0; i < 5; i++) printf(" %d", pid[i]);
	printf(" %d %d\n", m[live], s[live]);
	fflush(stdout);
	char line[256], buf[256];
	while (fgets(line, sizeof line, stdin)) {
		if (write(m[live], "ping\n", 5) != 5) return 5;
		size_t got = 0;
		buf[0] = 0;
		while (!strstr(buf, "pong")) { /* the echo of "ping", then the answer */
			ssize_t n = read(m[live], buf + got, sizeof buf - 1 - got);
			if (n <= 0) return 6;
			got += n;
			buf[got] = 0;
		}
		printf("pong\n");
		fflush(stdout);
	}
	return 0;
}
`

func ttyNr(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])[4]
}

// Issue 9 item 4: children that inherited each other's PTYs pin them; audit
// finds the 4 pinned ones with evidence naming the inheritance, and
// release frees exactly those, in every holder, leaving the live session.
func TestInheritedPTYsAreFoundAndFreedInEveryHolder(t *testing.T) {
	const live = 2
	bin := testproc.BuildC(t, "inheritor", inheritor)
	p := testproc.Start(t, bin, strconv.Itoa(live))
	v := p.ReadyInts(t)
	idx, kids, liveMaster, liveSlave := v[0:5], v[5:10], v[10], v[11]
	t.Cleanup(func() {
		for _, k := range kids {
			syscall.Kill(k, syscall.SIGKILL)
		}
	})
	holders := append([]int{p.PID}, kids...)
	time.Sleep(10 * time.Millisecond)

	a := auditJSON(t, "--min-idle", "0s", "--all")
	pinned := map[int]bool{}
	for _, pid := range holders {
		for _, f := range findingsOf(a, pid) {
			if f.Kind != "pty" {
				continue
			}
			if *f.Index == idx[live] {
				if f.State != "live" || !strings.Contains(f.Reason, fmt.Sprintf("controlling terminal of pid %d", kids[live])) {
					t.Errorf("pid %d fd %d of the live PTY: %s %q", pid, *f.FD, f.State, f.Reason)
				}
				continue
			}
			if f.State != "unattached" || f.Verdict != "reclaim" {
				t.Errorf("pid %d fd %d (pts/%d): %s/%s %q, want unattached/reclaim", pid, *f.FD, *f.Index, f.State, f.Verdict, f.Reason)
			}
			if !strings.Contains(f.Reason, "inherited: the same open file as") {
				t.Errorf("pid %d fd %d (pts/%d): evidence does not name the inheritance: %q", pid, *f.FD, *f.Index, f.Reason)
			}
			pinned[*f.Index] = true
		}
	}
	if len(pinned) != 4 {
		t.Fatalf("audit found %d pinned PTYs (%v), want 4", len(pinned), pinned)
	}

	before := testproc.PTYCount(t)
	rep, code, errs := releaseJSON(t, "--name", "inheritor", "--min-idle", "0s")
	after := testproc.PTYCount(t)
	if code != 0 {
		t.Fatalf("release: exit %d: %s\n%+v", code, errs, rep)
	}
	t.Logf("pty/nr %d -> %d; freed %+v", before, after, rep.Freed)
	if before-after != 4 {
		t.Errorf("pty/nr went from %d to %d, want 4 fewer", before, after)
	}
	freed := map[int]bool{}
	for _, f := range rep.Freed {
		freed[f.Index] = true
	}
	for i, id := range idx {
		if freed[id] != (i != live) {
			t.Errorf("pts/%d: freed=%v, want %v (freed: %+v)", id, freed[id], i != live, rep.Freed)
		}
	}
	if len(rep.Freed) != 4 {
		t.Errorf("freed: %+v", rep.Freed)
	}
	for _, ac := range rep.Actions {
		if ac.Kind == "pty" && *ac.Index == idx[live] || ac.Result == "failed" {
			t.Errorf("action: %+v", ac)
		}
	}
	// The live session: same controlling terminal, its fds untouched, and
	// a round trip through it still works.
	if l, _ := testproc.FDLink(p.PID, liveMaster); l != "/dev/ptmx" {
		t.Errorf("parent's live master fd %d: %q", liveMaster, l)
	}
	if l, _ := testproc.FDLink(kids[live], liveSlave); l != fmt.Sprintf("/dev/pts/%d", idx[live]) {
		t.Errorf("session's slave fd %d: %q", liveSlave, l)
	}
	if nr := ttyNr(t, kids[live]); nr == "0" {
		t.Errorf("the live child lost its controlling terminal")
	}
	for _, pid := range holders {
		if !testproc.Alive(pid) {
			t.Errorf("pid %d died", pid)
		}
	}
	fmt.Fprintln(p.Stdin, "ping")
	select {
	case got := <-p.Lines:
		if got != "pong" {
			t.Errorf("round trip through the live PTY: %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Error("no answer through the live PTY")
	}
}
