package cli

// Hostile FUSE mounts (issue 8, item 3): a user's file system server that
// never answers must not hang audit or release, and must not keep them
// from the rest of the machine. The server (testproc.HostileFUSE) runs as
// a user created in the test and mounts through fusermount3, as any user
// can; it prints every request it gets, so the tests check that we asked
// it nothing at all.

import (
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// fuseHolderSrc opens each path in argv (after an optional "exec" first
// argument), prints "ready <fd>...", and waits. With "exec" it opens them
// O_CLOEXEC, opens one real PTY master too (the leak), and then execs
// sleep: the kernel closes the FUSE files inside execve, while holding the
// process's exec lock, and the server never answers the flush.
const fuseHolderSrc = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int ex = argc > 1 && !strcmp(argv[1], "exec");
	printf("ready");
	for (int i = 1 + ex; i < argc; i++) {
		int fd = open(argv[i], O_RDONLY | (ex ? O_CLOEXEC : 0));
		if (fd < 0) { perror(argv[i]); return 1; }
		printf(" %d", fd);
	}
	if (ex) {
		int m = open("/dev/ptmx", O_RDWR | O_NOCTTY);
		if (m < 0) { perror("ptmx"); return 1; }
		printf(" %d", m);
	}
	printf("\n");
	fflush(stdout);
	if (ex) {
		sleep(1);
		execl("/bin/sleep", "sleep", "1000", (char *)0);
		perror("exec");
		return 1;
	}
	for (;;) pause();
}
`

// guarded runs f, which may hang on the server; after limit the server is
// stopped (which frees anything sleeping on it) and the test fails.
func guarded[T any](t *testing.T, fs *testproc.FUSE, limit time.Duration, what string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case r := <-done:
		return r
	case <-time.After(limit):
		reqs := fs.Requests()
		fs.Stop()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
		}
		t.Fatalf("%s hung on %s for %s; the server had been asked: %q", what, fs, limit, reqs)
		panic("unreachable")
	}
}

type cliResult struct {
	out, errs string
	code      int
}

// auditGuarded is audit --json under guarded.
func auditGuarded(t *testing.T, fs *testproc.FUSE, args ...string) report.Audit {
	t.Helper()
	r := guarded(t, fs, 90*time.Second, "audit", func() cliResult {
		out, errs, code := run(t, append([]string{"audit", "--json"}, args...)...)
		return cliResult{out, errs, code}
	})
	if r.code != 0 {
		t.Fatalf("audit %v: exit %d: %s", args, r.code, r.errs)
	}
	var a report.Audit
	if err := json.Unmarshal([]byte(r.out), &a); err != nil {
		t.Fatalf("audit JSON: %v\n%s", err, r.out)
	}
	return a
}

func fuseUser(t *testing.T) (int, int, *testproc.FUSE, string) {
	uid, gid := testproc.TestUser(t, "ptyreclaim-fuse")
	fs := testproc.StartHostileFUSE(t, uid, gid)
	holder := testproc.BuildC(t, "fuseholder", fuseHolderSrc)
	testproc.OpenToAll(t, holder)
	return uid, gid, fs, holder
}

// a. A process holds fds of FUSE files named ptmx and pts/0: audit asks
// the server nothing (no copy, no stat, no flush), finishes, reports
// nothing for them, and still reports a real leaker's masters.
func TestAuditNeverTouchesFUSEFilesNamedLikePTYs(t *testing.T) {
	uid, gid, fs, holderBin := fuseUser(t)
	holder := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(holderBin, fs.Dir+"/ptmx", fs.Dir+"/pts/0")))
	leak := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "3", "0")
	t.Cleanup(fs.Stop) // first of the cleanups: frees anything stuck on it
	fds := holder.ReadyInts(t)
	for i, want := range []string{"/ptmx", "/pts/0"} {
		if l, _ := testproc.FDLink(holder.PID, fds[i]); !strings.HasSuffix(l, want) {
			t.Fatalf("holder fd %d links to %q, want a name ending %q", fds[i], l, want)
		}
	}
	before := len(fs.Requests())

	a := auditGuarded(t, fs, "--min-idle", "0s", "--all", "--pid", strconv.Itoa(holder.PID), "--pid", strconv.Itoa(leak.PID))

	if asked := fs.Requests()[before:]; len(asked) != 0 {
		t.Errorf("audit asked the user's server %q", asked)
	}
	if got := findingsOf(a, holder.PID); len(got) != 0 {
		t.Errorf("FUSE files reported as PTYs: %+v", got)
	}
	got := findingsOf(a, leak.PID)
	if len(got) != 3 {
		t.Fatalf("want the leaker's 3 masters, got %+v", got)
	}
	for _, f := range got {
		if f.Side != "master" || f.Verdict != "reclaim" {
			t.Errorf("leaker finding %+v", f)
		}
	}
	for i := range fds {
		if _, err := testproc.FDLink(holder.PID, fds[i]); err != nil || !testproc.Alive(holder.PID) {
			t.Errorf("holder changed: fd %d: %v alive %v", fds[i], err, testproc.Alive(holder.PID))
		}
	}
}

// d. One process stalls every look at its fds: it execs while holding a
// FUSE file O_CLOEXEC, and the kernel closes that file inside execve with
// the process's exec lock held, waiting on a flush never answered. Taking
// a copy of any of its fds (pidfd_getfd) waits on that lock. The scan gives
// it up after its per-process step deadline, reports it unreadable, and
// audits the rest: a real leaker's masters are reported.
func TestHostileExecDoesNotStallTheOthers(t *testing.T) {
	uid, gid, fs, holderBin := fuseUser(t)
	hostile := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(holderBin, "exec", fs.Dir+"/ptmx")))
	leak := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "3", "0", "used")
	t.Cleanup(fs.Stop)
	hfds := hostile.ReadyInts(t)
	leak.ReadyInts(t)
	hMaster := hfds[len(hfds)-1]
	deadline := time.Now().Add(30 * time.Second)
	for !fs.Asked("flush", "/ptmx") {
		if time.Now().After(deadline) {
			t.Fatalf("the hostile process never reached its flush; server saw %q", fs.Requests())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing here may read the hostile process's fd links now: readlink
	// of /proc/PID/fd/N waits on the same lock (so does ps).
	// The hostile pid is not named: a named pid that cannot be read is a
	// bad target (exit 2); the scan covers the whole machine all the same.
	pids := []string{"--pid", strconv.Itoa(leak.PID)}
	t.Logf("pid %d sleeps in its execve on the flush; auditing", hostile.PID)

	a := auditGuarded(t, fs, append([]string{"--min-idle", "0s", "--all"}, pids...)...)
	if got := findingsOf(a, leak.PID); len(got) != 3 {
		t.Fatalf("want the leaker's 3 masters, got %+v (notes %q)", got, a.Notes)
	}
	note := "pid " + strconv.Itoa(hostile.PID) + ": unreadable: timed out"
	if !strings.Contains(strings.Join(a.Notes, "\n"), note) {
		t.Errorf("no note %q in %q", note, a.Notes)
	}

	// Release of the leaker while the stalled process is still on the
	// machine: the stalled process cannot be read, but the kernel's own view
	// of each leaked PTY (no slave open anywhere, no session) holds for it
	// too, so the leaker's masters are freed all the same.
	before := testproc.PTYCount(t)
	r := guarded(t, fs, 90*time.Second, "release", func() cliResult {
		out, errs, code := run(t, "release", "--pid", strconv.Itoa(leak.PID), "--min-idle", "0s", "--yes")
		return cliResult{out, errs, code}
	})
	if r.code != 0 {
		t.Fatalf("release: exit %d: %s\n%s", r.code, r.errs, r.out)
	}
	if got := ptmxFDs(t, leak.PID); len(got) != 0 {
		t.Errorf("the leaker still holds masters %v after release:\n%s%s", got, r.out, r.errs)
	}
	if freed := before - testproc.PTYCount(t); freed != 3 {
		t.Errorf("the kernel's PTY count fell by %d, want 3:\n%s%s", freed, r.out, r.errs)
	}
	echoes(t, leak, "still working after release")

	// The stalled process was untouched: once its server is gone, its
	// execve ends and sleep still holds the master.
	fs.Stop()
	deadline = time.Now().Add(30 * time.Second)
	for {
		l, err := testproc.FDLink(hostile.PID, hMaster)
		if err == nil && l == "/dev/ptmx" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hostile master fd %d after release: %q %v", hMaster, l, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// execMapSrc maps argv[1] (a file of the user's FUSE server, whose reads
// never answer) executable and never touches it, leaks three PTY masters
// whose slaves came and went, prints "ready <first master>", then echoes.
const execMapSrc = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv) {
	int f = open(argv[1], O_RDONLY);
	if (f < 0) { perror("open"); return 1; }
	void *code = mmap(NULL, 65536, PROT_READ | PROT_EXEC, MAP_PRIVATE, f, 0);
	if (code == MAP_FAILED) { perror("mmap"); return 1; }
	int first = -1;
	for (int i = 0; i < 3; i++) {
		int m = posix_openpt(O_RDWR | O_NOCTTY);
		if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
		close(open(ptsname(m), O_RDWR | O_NOCTTY));
		if (first < 0) first = m;
	}
	printf("ready %d\n", first);
	fflush(stdout);
	char buf[4096];
	for (;;) {
		ssize_t r = read(0, buf, sizeof buf);
		if (r <= 0) return 0;
		if (write(1, buf, r) != r) return 1;
	}
}
`

// e. The released program has a file of the user's server mapped
// executable. Reading that mapping through /proc/PID/mem while the program
// is frozen (to find an instruction to borrow, say) would wait on a READ
// the server never answers, with the program held. The injector takes its
// code only from kernel-served mappings: the release completes, the server
// is asked nothing, and the program keeps working.
func TestReleaseNeverReadsAFUSEMappingOfTheTarget(t *testing.T) {
	uid, gid, fs, _ := fuseUser(t)
	bin := testproc.BuildC(t, "execmap", execMapSrc)
	testproc.OpenToAll(t, bin)
	target := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(bin, fs.Dir+"/code")))
	t.Cleanup(fs.Stop) // before the target's end: its exit would flush the FUSE file
	target.ReadyInts(t)
	before, asked := testproc.PTYCount(t), len(fs.Requests())

	r := guarded(t, fs, 90*time.Second, "release", func() cliResult {
		out, errs, code := run(t, "release", "--pid", strconv.Itoa(target.PID), "--min-idle", "0s", "--yes")
		return cliResult{out, errs, code}
	})
	if r.code != 0 {
		t.Fatalf("release: exit %d: %s\n%s", r.code, r.errs, r.out)
	}
	if got := fs.Requests()[asked:]; len(got) != 0 {
		t.Errorf("the release asked the user's server %q", got)
	}
	if got := ptmxFDs(t, target.PID); len(got) != 0 {
		t.Errorf("masters %v still held:\n%s", got, r.out)
	}
	if freed := before - testproc.PTYCount(t); freed != 3 {
		t.Errorf("the kernel's PTY count fell by %d, want 3:\n%s", freed, r.out)
	}
	echoes(t, target, "still working after release")
}
