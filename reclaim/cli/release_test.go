package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

func releaseJSON(t *testing.T, args ...string) (report.Release, int, string) {
	t.Helper()
	out, errs, code := run(t, append([]string{"release", "--json", "--yes"}, args...)...)
	var r report.Release
	if out != "" {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("release JSON: %v\n%s", err, out)
		}
	}
	return r, code, errs
}

// echoes checks the target still does its work: a line written to its stdin
// comes back, and it never saw EINTR.
func echoes(t *testing.T, p *testproc.Proc, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(p.Stdin, line); err != nil {
		t.Fatalf("write to target: %v", err)
	}
	select {
	case got := <-p.Lines:
		if got != line {
			t.Fatalf("target answered %q, want %q", got, line)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("target did not answer %q", line)
	}
}

func links(t *testing.T, pid int, fds []int) map[string]int {
	t.Helper()
	count := map[string]int{}
	for _, fd := range fds {
		l, err := testproc.FDLink(pid, fd)
		if err != nil {
			l = "closed"
		}
		count[l]++
	}
	return count
}

// Seed 001: a long-running app holding leaked masters gets them back
// without stopping; the kernel's PTY count drops by exactly that many.
func TestReleaseMastersOfSeed001(t *testing.T) {
	bin := testproc.BuildC(t, "leak", testproc.LeakMasters)
	for _, method := range []string{"devnull", "close"} {
		t.Run(method, func(t *testing.T) {
			p := testproc.Start(t, bin, "100", "4")
			masters := ptmxFDs(t, p.PID)
			before := testproc.PTYCount(t)
			r, code, errs := releaseJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s", "--method", method)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errs)
			}
			if after := testproc.PTYCount(t); before-after != 100 {
				t.Fatalf("kernel PTY count %d -> %d, want a drop of 100", before, after)
			}
			if r.PoolBefore.InUse-r.PoolAfter.InUse != 100 || len(r.Actions) != 100 {
				t.Errorf("report: pool %+v -> %+v, %d actions", r.PoolBefore, r.PoolAfter, len(r.Actions))
			}
			for _, a := range r.Actions {
				if a.Result != "done" || string(a.Method) != method {
					t.Errorf("action %+v", a)
				}
			}
			want := map[string]int{"/dev/null": 100}
			if method == "close" {
				want = map[string]int{"closed": 100}
			}
			if got := links(t, p.PID, masters); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("fds now: %v, want %v", got, want)
			}
			echoes(t, p, "still here after release")
		})
	}
}

// Seed 000: the hung-up slave the spawn path forgot is released too.
func TestReleaseHungUpSlaveOfSeed000(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "seed000", testproc.Seed000))
	slave := p.ReadyInts(t)[0]
	before := testproc.PTYCount(t)
	_, code, errs := releaseJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if after := testproc.PTYCount(t); before-after != 1 {
		t.Fatalf("kernel PTY count %d -> %d, want a drop of 1", before, after)
	}
	// The default method, quiet: a socket at the same number.
	if l, _ := testproc.FDLink(p.PID, slave); !strings.HasPrefix(l, "socket:") {
		t.Errorf("slave fd now %q, want the default quiet socket", l)
	}
	if !testproc.Alive(p.PID) {
		t.Error("target died")
	}
}

// Seed 002: stuck children are ended; a worker that still has a writer is
// left alone and later finishes normally.
func TestReleaseOrphansOfSeed002(t *testing.T) {
	bin := testproc.BuildC(t, "seed002", testproc.Seed002)
	stuck := testproc.Start(t, bin, "3")
	kids := stuck.ReadyInts(t)
	workers := testproc.Start(t, bin, "2", "worker")
	workerKids := workers.ReadyInts(t)
	waitBlocked(t, append(append([]int{}, kids...), workerKids...))

	r, code, errs := releaseJSON(t, "--pid", strconv.Itoa(stuck.PID), "--pid", strconv.Itoa(workers.PID), "--orphans", "--min-idle", "0s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	killed := map[int]bool{}
	for _, a := range r.Actions {
		if a.Kind == "orphan" && a.Result == "done" && a.Method == "kill" {
			killed[a.PID] = true
		}
	}
	for _, k := range kids {
		if !killed[k] {
			t.Errorf("stuck child %d not ended: %+v", k, r.Actions)
		}
		waitGone(t, k)
	}
	for _, k := range workerKids {
		if killed[k] || !testproc.Alive(k) {
			t.Errorf("worker %d was touched", k)
		}
	}
	if !testproc.Alive(stuck.PID) || !testproc.Alive(workers.PID) {
		t.Error("a parent died")
	}
	fmt.Fprintln(workers.Stdin, "go")
	for _, k := range workerKids {
		waitGone(t, k)
	}
	// Without --orphans nothing is killed.
	again := testproc.Start(t, bin, "1")
	kid := again.ReadyInts(t)[0]
	waitBlocked(t, []int{kid})
	if _, code, errs := releaseJSON(t, "--pid", strconv.Itoa(again.PID), "--min-idle", "0s"); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !testproc.Alive(kid) {
		t.Error("an orphan was ended without --orphans")
	}
}

func TestReleaseDryRunChangesNothing(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "10")
	masters := ptmxFDs(t, p.PID)
	before := testproc.PTYCount(t)
	out, errs, code := run(t, "release", "--pid", strconv.Itoa(p.PID), "--min-idle", "0s", "--dry-run")
	if code != 0 || !strings.Contains(out, "Dry run: would release 10 PTY fds in 1 processes") {
		t.Fatalf("exit %d: %s\n%s", code, errs, out)
	}
	if testproc.PTYCount(t) != before || links(t, p.PID, masters)["/dev/ptmx"] != 10 {
		t.Error("dry run changed something")
	}
}

// Refusals: each is one clear line, exit 2, and nothing changes.
func TestReleaseRefusesAndChangesNothing(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "3")
	pid := strconv.Itoa(p.PID)
	before := testproc.PTYCount(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"release", "--pid", pid, "--min-idle", "0s"}, "pass --yes"}, // no terminal to ask on
		{[]string{"release", "--pid", pid, "--method", "shred", "--yes"}, "--method"},
		{[]string{"release", "--all", "--pid", pid, "--yes"}, "--all cannot be combined"},
		{[]string{"release", "--pid", "999999999", "--yes"}, "no such process"},
		{[]string{"release", "--name", "no-such-program-xyz", "--yes"}, "no such process"},
	}
	for _, c := range cases {
		_, errs, code := run(t, c.args...)
		if code != ExitUsage || !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: exit %d, stderr %q, want 2 and %q", c.args, code, errs, c.want)
		}
	}
	if testproc.PTYCount(t) != before {
		t.Error("a refused release changed the PTY count")
	}
	// A protected process named on the command line is skipped, not touched.
	r, code, _ := releaseJSON(t, "--pid", "1", "--min-idle", "0s")
	if code != 0 {
		t.Errorf("pid 1: exit %d", code)
	}
	for _, a := range r.Actions {
		if a.Result != "skipped" {
			t.Errorf("pid 1 action %+v", a)
		}
	}
}

// As a user who is not root, release refuses with a clear message and
// changes nothing.
func TestReleaseAsNonRootRefuses(t *testing.T) {
	bin := buildForNobody(t)
	// The target belongs to nobody, so even its owner's request must fail
	// without a daemon to ask.
	leak := testproc.BuildC(t, "leak", testproc.LeakMasters)
	openToAll(t, leak)
	cmd := exec.Command(leak, "2")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	p := testproc.StartCmd(t, cmd)
	before := testproc.PTYCount(t)

	rel := exec.Command(bin, "release", "--pid", strconv.Itoa(p.PID), "--min-idle", "0s", "--yes")
	rel.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stderr bytes.Buffer
	rel.Stderr = &stderr
	err := rel.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != ExitUsage {
		t.Fatalf("want exit 2, got %v: %s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "needs root") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr: %q", stderr.String())
	}
	if testproc.PTYCount(t) != before || len(ptmxFDs(t, p.PID)) != 2 {
		t.Error("a refused release changed something")
	}
}
