package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// run calls the CLI in-process, the way main does, and returns what it
// printed and its exit code.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: &errb})
	return out.String(), errb.String(), code
}

func auditJSON(t *testing.T, args ...string) report.Audit {
	t.Helper()
	out, errs, code := run(t, append([]string{"audit", "--json"}, args...)...)
	if code != 0 {
		t.Fatalf("audit %v: exit %d: %s", args, code, errs)
	}
	var a report.Audit
	if err := json.Unmarshal([]byte(out), &a); err != nil {
		t.Fatalf("audit JSON: %v\n%s", err, out)
	}
	return a
}

// findingsOf returns the findings of one pid.
func findingsOf(a report.Audit, pid int) []report.Finding {
	var out []report.Finding
	for _, f := range a.Findings {
		if f.PID == pid {
			out = append(out, f)
		}
	}
	return out
}

func TestAuditFindsLeakedMastersSingleAndMultiThreaded(t *testing.T) {
	bin := testproc.BuildC(t, "leak", testproc.LeakMasters)
	for _, threads := range []string{"0", "6"} {
		t.Run("threads="+threads, func(t *testing.T) {
			p := testproc.Start(t, bin, "40", threads)
			masters := ptmxFDs(t, p.PID) // the kernel's own view
			if len(masters) != 40 {
				t.Fatalf("the kernel shows %d masters, want 40", len(masters))
			}
			a := auditJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s")
			got := findingsOf(a, p.PID)
			if len(got) != 40 {
				t.Fatalf("want 40 findings, got %d: %+v", len(got), got)
			}
			indices := map[int]bool{}
			for i, f := range got {
				if f.Kind != "pty" || f.Side != "master" || f.State != "unattached" || f.Verdict != "reclaim" {
					t.Errorf("finding %d: %+v", i, f)
				}
				if *f.FD != masters[i] {
					t.Errorf("finding %d: fd %d, want %d", i, *f.FD, masters[i])
				}
				// The index the kernel gave this master, read independently.
				want := ttyIndex(t, p.PID, *f.FD)
				if *f.Index != want {
					t.Errorf("fd %d: index %d, kernel says %d", *f.FD, *f.Index, want)
				}
				indices[*f.Index] = true
			}
			if len(indices) != 40 {
				t.Errorf("want 40 distinct PTY indices, got %d", len(indices))
			}
		})
	}
}

// ptmxFDs lists, in order, the fds of pid that /proc shows as /dev/ptmx.
func ptmxFDs(t *testing.T, pid int) []int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		if l, _ := testproc.FDLink(pid, fd); l == "/dev/ptmx" {
			fds = append(fds, fd)
		}
	}
	sort.Ints(fds)
	return fds
}

// ttyIndex reads tty-index from the kernel's fdinfo of a master.
func ttyIndex(t *testing.T, pid, fd int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "tty-index:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	t.Fatalf("no tty-index for fd %d", fd)
	return -1
}

func TestAuditFindsHungUpSlaveOfSeed000(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "seed000", testproc.Seed000))
	slave := p.ReadyInts(t)[0]
	link, err := testproc.FDLink(p.PID, slave)
	if err != nil || !strings.HasSuffix(link, "(deleted)") {
		t.Fatalf("the kernel should show the slave deleted: %q %v", link, err)
	}
	got := findingsOf(auditJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s"), p.PID)
	if len(got) != 1 {
		t.Fatalf("want one finding, got %+v", got)
	}
	f := got[0]
	if *f.FD != slave || f.Side != "slave" || f.State != "hung-up" || f.Verdict != "reclaim" {
		t.Errorf("hung-up slave: %+v", f)
	}
}

// livePython holds PTYs in every live shape: a child session with the PTY
// as its controlling terminal, and a master whose slave another process
// holds (no controlling terminal).
const livePython = `
import os, pty, subprocess, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execvp("sleep", ["sleep", "600"])
m, s = os.openpty()
child = subprocess.Popen(["sleep", "600"], stdin=s, stdout=subprocess.DEVNULL, start_new_session=True)
os.close(s)
print("ready", pid, fd, child.pid, m, flush=True)
sys.stdin.read()
`

func TestAuditNeverListsLiveSessions(t *testing.T) {
	p := testproc.Start(t, "python3", "-c", livePython)
	v := p.ReadyInts(t)
	sessionPID, sessionMaster, otherPID, otherMaster := v[0], v[1], v[2], v[3]
	t.Cleanup(func() { syscall.Kill(sessionPID, syscall.SIGKILL); syscall.Kill(otherPID, syscall.SIGKILL) })

	a := auditJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s")
	if got := findingsOf(a, p.PID); len(got) != 0 {
		t.Fatalf("live PTYs must not be candidates: %+v", got)
	}
	all := findingsOf(auditJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s", "--all"), p.PID)
	states := map[int]report.Finding{}
	for _, f := range all {
		states[*f.FD] = f
	}
	for _, fd := range []int{sessionMaster, otherMaster} {
		f, ok := states[fd]
		if !ok || f.State != "live" || f.Verdict != "skip" {
			t.Errorf("master fd %d: want live/skip, got %+v (ok=%v)", fd, f, ok)
		}
	}
	if r := states[sessionMaster].Reason; !strings.Contains(r, "controlling terminal of pid "+strconv.Itoa(sessionPID)) {
		t.Errorf("session reason: %q", r)
	}
	if r := states[otherMaster].Reason; !strings.Contains(r, strconv.Itoa(otherPID)) {
		t.Errorf("other-holder reason: %q", r)
	}
}

func TestAuditRecentIOIsLive(t *testing.T) {
	// Holds both ends; writes "x" to the slave when told to.
	const src = `
import os, sys
m, s = os.openpty()
print("ready", m, s, os.ttyname(s), flush=True)
for line in sys.stdin:
    os.write(s, b"x")
    print("wrote", flush=True)
`
	p := testproc.Start(t, "python3", "-c", src)
	fields := strings.Fields(p.Ready)
	node := fields[2]
	// Backdate the slave node as if the PTY had been idle for an hour.
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(node, old, old); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(p.PID)
	if got := findingsOf(auditJSON(t, "--pid", pid, "--min-idle", "5m"), p.PID); len(got) != 2 {
		t.Fatalf("idle an hour: want master and slave as candidates, got %+v", got)
	}
	fmt.Fprintln(p.Stdin, "write")
	<-p.Lines
	if got := findingsOf(auditJSON(t, "--pid", pid, "--min-idle", "5m"), p.PID); len(got) != 0 {
		t.Fatalf("I/O just now: must be live, got %+v", got)
	}
	all := findingsOf(auditJSON(t, "--pid", pid, "--min-idle", "5m", "--all"), p.PID)
	for _, f := range all {
		if f.State != "live" || !strings.Contains(f.Reason, "within min-idle") {
			t.Errorf("recent I/O: %+v", f)
		}
	}
}

func TestAuditWatchedMasterIsSkipped(t *testing.T) {
	const src = `
import os, select, sys
m, s = os.openpty()
os.close(s)
m2, s2 = os.openpty()
os.close(s2)
ep = select.epoll()
ep.register(m, select.EPOLLIN)
d = os.dup(m2)            # registered under a number that is then closed
ep.register(d, select.EPOLLIN)
os.close(d)
print("ready", m, m2, flush=True)
sys.stdin.read()
`
	p := testproc.Start(t, "python3", "-c", src)
	v := p.ReadyInts(t)
	pol := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, pol, "version: 1\ndefaults:\n  watched: skip\n")
	got := findingsOf(auditJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s", "--policy", pol), p.PID)
	if len(got) != 2 {
		t.Fatalf("want two findings, got %+v", got)
	}
	for i, f := range got {
		if *f.FD != v[i] || !*f.Watched || f.Verdict != "skip" || !strings.Contains(f.Reason, "epoll") {
			t.Errorf("watched master %d: %+v", v[i], f)
		}
	}
	// The default releases watched fds with quiet, and says so.
	for i, f := range findingsOf(auditJSON(t, "--pid", strconv.Itoa(p.PID), "--min-idle", "0s"), p.PID) {
		if !*f.Watched || f.Verdict != "reclaim" || !strings.Contains(f.Reason, "watched by its event loop: defaults.watched_method quiet: a socket that never becomes readable") {
			t.Errorf("watched master %d under the default: %+v", v[i], f)
		}
	}
}

func TestAuditStuckChildrenOfSeed002(t *testing.T) {
	bin := testproc.BuildC(t, "seed002", testproc.Seed002)

	orphans := testproc.Start(t, bin, "3")
	kids := orphans.ReadyInts(t)
	workers := testproc.Start(t, bin, "2", "worker")
	workerKids := workers.ReadyInts(t)
	selfpipe := testproc.Start(t, bin, "2", "selfpipe")
	selfpipeKids := selfpipe.ReadyInts(t)
	waitBlocked(t, append(append(append([]int{}, kids...), workerKids...), selfpipeKids...))

	a := auditJSON(t, "--min-idle", "0s")
	found := map[int]report.Finding{}
	for _, f := range a.Findings {
		if f.Kind == "orphan" {
			found[f.PID] = f
		}
	}
	for _, k := range kids {
		f, ok := found[k]
		if !ok || f.State != "orphan" || f.Verdict != "kill" || *f.PPID != orphans.PID || *f.BlockedFD < 3 {
			t.Errorf("stuck child %d: %+v (found %v)", k, f, ok)
		}
	}
	for _, k := range append(workerKids, selfpipeKids...) {
		if f, ok := found[k]; ok {
			t.Errorf("child %d can still be woken, but was reported: %+v", k, f)
		}
	}
	// The workers really were only waiting: "go" wakes them and they finish.
	fmt.Fprintln(workers.Stdin, "go")
	for _, k := range workerKids {
		waitGone(t, k)
	}
	// --pid of the parent lists its orphan children.
	a = auditJSON(t, "--min-idle", "0s", "--pid", strconv.Itoa(orphans.PID))
	if len(a.Findings) != len(kids) {
		t.Errorf("audit --pid parent: want %d orphans, got %+v", len(kids), a.Findings)
	}
}

// waitBlocked waits until each pid sleeps in a pipe read, so the audit sees
// the state the test means.
func waitBlocked(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for {
			w, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
			if strings.Contains(string(w), "pipe_read") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pid %d never blocked in a pipe read (wchan %q)", pid, w)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for testproc.Alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still alive", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAuditTellsDevptsInstancesApart puts a leaked PTY in a second devpts
// instance (a mount namespace with devpts mounted newinstance, as a
// container has) at the same index as a live host PTY, and checks that
// neither is mistaken for the other.
func TestAuditTellsDevptsInstancesApart(t *testing.T) {
	host := testproc.Start(t, "python3", "-c", livePython)
	v := host.ReadyInts(t)
	t.Cleanup(func() { syscall.Kill(v[0], syscall.SIGKILL); syscall.Kill(v[2], syscall.SIGKILL) })
	hostIndex := ttyIndex(t, host.PID, v[1])

	// In the new instance, open masters until one has the host's index.
	const inner = `
import os, sys
n = int(sys.argv[1]); d = sys.argv[2]
fds = [os.open(d + "/ptmx", os.O_RDWR | os.O_NOCTTY) for _ in range(n + 1)]
print("ready", fds[-1], flush=True)
sys.stdin.read()
`
	dir := filepath.Join(t.TempDir(), "pts")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c",
		`mount -t devpts -o newinstance,ptmxmode=0666 devpts "$1" && exec python3 -c "$2" "$3" "$1"`,
		"sh", dir, inner, strconv.Itoa(hostIndex))
	ctr := testproc.StartCmd(t, cmd)
	ctrFD := ctr.ReadyInts(t)[0]
	if got := ttyIndex(t, ctr.PID, ctrFD); got != hostIndex {
		t.Fatalf("container master index %d, want %d", got, hostIndex)
	}

	a := auditJSON(t, "--min-idle", "0s", "--all", "--pid", strconv.Itoa(host.PID), "--pid", strconv.Itoa(ctr.PID))
	var hostF, ctrF *report.Finding
	for i, f := range a.Findings {
		if f.PID == host.PID && *f.FD == v[1] {
			hostF = &a.Findings[i]
		}
		if f.PID == ctr.PID && *f.FD == ctrFD {
			ctrF = &a.Findings[i]
		}
	}
	if hostF == nil || ctrF == nil {
		t.Fatalf("missing findings: host %v container %v in %+v", hostF, ctrF, a.Findings)
	}
	if *hostF.Index != *ctrF.Index {
		t.Fatalf("test setup: indices differ: %d %d", *hostF.Index, *ctrF.Index)
	}
	if hostF.State != "live" {
		t.Errorf("host PTY %d: %+v", hostIndex, *hostF)
	}
	if ctrF.State != "unattached" || ctrF.Verdict != "reclaim" {
		t.Errorf("container PTY %d: %+v", hostIndex, *ctrF)
	}
}
