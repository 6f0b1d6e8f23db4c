package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// asyncioBothEnds is the program of issue 8 item 10: one PTY, both ends in
// one process, the master on loop.add_reader with a naive callback that
// reads without catching errors. Were the slave released alone, the
// master would hang up, the callback would raise EIO at every turn of the
// loop and asyncio would print a traceback each time. Its stderr goes to
// argv[1] so the test can count them; stdin lines are echoed.
const asyncioBothEnds = `
import asyncio, os, sys
err = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.dup2(err, 2)
m, s = os.openpty()
loop = asyncio.new_event_loop()
def on_master():
    data = os.read(m, 1024)
    print("master said", data, file=sys.stderr, flush=True)
loop.add_reader(m, on_master)
def on_stdin():
    line = sys.stdin.readline()
    if not line:
        loop.stop()
        return
    print(line.strip(), flush=True)
loop.add_reader(sys.stdin.fileno(), on_stdin)
print("ready", m, s, flush=True)
loop.run_forever()
`

// cpuTicks is the utime+stime of a process, in clock ticks.
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

func tracebacks(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "Traceback")
}

// One PTY, one verdict: the release never replaces the unwatched slave of
// a PTY whose master the program's event loop watches without the master.
// Under watched: skip both ends stay; under the default both go, with
// quiet, and the naive callback (which ignores an empty read, and would
// raise at every turn on a real hang-up's EIO) is never woken: no
// traceback, no spin. Checked on Debian's python3 with its asyncio, as a
// user runs it.
func TestDefaultReleaseKeepsAsyncioPTYWhole(t *testing.T) {
	errPath := filepath.Join(t.TempDir(), "stderr")
	p := testproc.Start(t, "/usr/bin/python3", "-c", asyncioBothEnds, errPath)
	v := p.ReadyInts(t)
	master, slave := v[0], v[1]
	echoes(t, p, "before")
	linksBefore := links(t, p.PID, []int{master, slave})
	const window = 2 * time.Second
	c0 := cpuTicks(t, p.PID)
	time.Sleep(window)
	cpuBefore := cpuTicks(t, p.PID) - c0

	skip := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, skip, "version: 1\ndefaults:\n  watched: skip\n")
	rep, code, errs := releaseJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s", "--policy", skip)
	if code != 0 {
		t.Errorf("release under watched: skip: exit %d: %s", code, errs)
	}
	reasons := map[int]string{}
	for _, a := range rep.Actions {
		if a.PID != p.PID {
			continue
		}
		if a.Result != "skipped" || !strings.Contains(a.Reason, "epoll") {
			t.Errorf("fd %d: %s %q, want skipped as watched", *a.FD, a.Result, a.Reason)
		}
		reasons[*a.FD] = a.Reason
	}
	if len(reasons) != 2 || reasons[master] != reasons[slave] {
		t.Errorf("want both ends skipped with one reason, got %v", reasons)
	}
	if len(rep.Freed) != 0 {
		t.Errorf("freed: %+v", rep.Freed)
	}
	if got := links(t, p.PID, []int{master, slave}); fmt.Sprint(got) != fmt.Sprint(linksBefore) {
		t.Errorf("fds changed under watched: skip: %v, were %v", got, linksBefore)
	}

	rep, code, errs = releaseJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s")
	if code != 0 {
		t.Errorf("default release: exit %d: %s", code, errs)
	}
	done := 0
	for _, a := range rep.Actions {
		if a.PID == p.PID && a.Result == "done" && a.Method == "quiet" {
			done++
		}
	}
	if done != 2 || len(rep.Freed) != 1 {
		t.Errorf("default release: %d ends done with quiet, freed %+v; want both, one PTY", done, rep.Freed)
	}
	c1 := cpuTicks(t, p.PID)
	time.Sleep(window)
	cpuAfter := cpuTicks(t, p.PID) - c1
	echoes(t, p, "after")
	n := tracebacks(t, errPath)
	t.Logf("CPU ticks in %s: %d before, %d after the release; %d tracebacks", window, cpuBefore, cpuAfter, n)
	if n != 0 {
		t.Errorf("%d tracebacks after the release: an exception storm", n)
	}
	// An idle loop uses next to nothing; a storm uses a whole CPU (~200
	// ticks in the window at 100 Hz).
	if cpuAfter > cpuBefore+20 {
		t.Errorf("CPU ticks in %s went from %d to %d: the loop spins", window, cpuBefore, cpuAfter)
	}
	for _, fd := range []int{master, slave} {
		if l, _ := testproc.FDLink(p.PID, fd); !strings.HasPrefix(l, "socket:") {
			t.Errorf("fd %d is %q, want the quiet socket", fd, l)
		}
	}
}

// slaveTalker holds both ends of one PTY and writes to the slave, so the
// PTY saw I/O a moment ago. Ready line: master, slave.
const slaveTalker = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(void) {
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
	int s = open(ptsname(m), O_RDWR | O_NOCTTY);
	if (s < 0 || write(s, "hello\n", 6) != 6) { perror("slave"); return 1; }
	printf("ready %d %d\n", m, s);
	fflush(stdout);
	char buf[4096];
	for (;;) {
		ssize_t r = read(0, buf, sizeof buf);
		if (r <= 0) return 0;
		if (write(1, buf, r) != r) return 1;
	}
}
`

// A PTY whose slave saw recent I/O is live on both ends: neither the slave
// nor the master is released.
func TestRecentSlaveIOKeepsBothEnds(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "talker", slaveTalker))
	v := p.ReadyInts(t)
	before := links(t, p.PID, v)
	pid := strconv.Itoa(p.PID)
	fs := findingsOf(auditJSON(t, "--pid", pid, "--min-idle", "1h", "--all"), p.PID)
	if len(fs) != 2 {
		t.Fatalf("want both ends in the audit, got %+v", fs)
	}
	for _, f := range fs {
		if f.State != "live" || f.Verdict != "skip" || !strings.Contains(f.Reason, "saw I/O") || f.Reason != fs[0].Reason {
			t.Errorf("fd %d (%s): %s/%s %q, want live with one reason for both ends", *f.FD, f.Side, f.State, f.Verdict, f.Reason)
		}
	}
	rep, code, errs := releaseJSON(t, "--pid", pid, "--min-idle", "1h")
	if code != 0 {
		t.Fatalf("release: exit %d: %s", code, errs)
	}
	for _, a := range rep.Actions {
		if a.PID == p.PID && a.Result != "skipped" {
			t.Errorf("fd %d: %s %q", *a.FD, a.Result, a.Reason)
		}
	}
	if len(rep.Freed) != 0 {
		t.Errorf("freed: %+v", rep.Freed)
	}
	if got := links(t, p.PID, v); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("fds changed: %v, were %v", got, before)
	}
	echoes(t, p, "still here")
}
