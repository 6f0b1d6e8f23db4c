package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/daemon"
	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// holdPTY opens argv[1] PTY masters and keeps them, then does what argv[2]
// says: "plain"; "nodump" (prctl PR_SET_DUMPABLE 0); "flip" (a thread
// turns dumpability off and on forever); "name:HEX" (prctl PR_SET_NAME to
// those bytes). Prints "ready", then echoes stdin lines until EOF.
const holdPTY = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>

static void *flip(void *a) {
	for (;;) {
		prctl(PR_SET_DUMPABLE, 0);
		usleep(300);
		prctl(PR_SET_DUMPABLE, 1);
		usleep(300);
	}
	return a;
}

int main(int argc, char **argv) {
	int n = atoi(argv[1]);
	const char *mode = argc > 2 ? argv[2] : "plain";
	for (int i = 0; i < n; i++) {
		int m = posix_openpt(O_RDWR | O_NOCTTY);
		if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
	}
	if (!strcmp(mode, "nodump")) prctl(PR_SET_DUMPABLE, 0);
	if (!strcmp(mode, "flip")) { pthread_t t; pthread_create(&t, NULL, flip, NULL); }
	if (!strncmp(mode, "name:", 5)) {
		char name[16] = {0};
		const char *h = mode + 5;
		for (int i = 0; i < 15 && h[2*i] && h[2*i+1]; i++) {
			char b[3] = {h[2*i], h[2*i+1], 0};
			name[i] = (char)strtol(b, NULL, 16);
		}
		prctl(PR_SET_NAME, name);
	}
	printf("ready\n");
	fflush(stdout);
	char buf[4096];
	for (;;) {
		ssize_t r = read(0, buf, sizeof buf);
		if (r <= 0) return 0;
		if (write(1, buf, r) != r) return 1;
	}
}
`

// secName is a user or program name unique to this test run.
func secName(what string) string { return fmt.Sprintf("prs%d%s", os.Getpid()%1000000, what) }

// buildHold builds holdPTY where every user can run it, under name.
func buildHold(t *testing.T, name string) string {
	t.Helper()
	return copyNamed(t, testproc.BuildC(t, "hold", holdPTY), name)
}

// setID copies a program and makes it setuid or setgid root.
func setID(t *testing.T, src, name string, mode os.FileMode) string {
	t.Helper()
	dst := filepath.Join(filepath.Dir(src), name)
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dst, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil { // after chown, which clears set-id bits
		t.Fatal(err)
	}
	return dst
}

func statusField(t *testing.T, pid int, key string) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("pid %d: no %s in status", pid, key)
	return ""
}

// releaseAs runs `ptyreclaim release` through the daemon as a user.
func releaseAs(t *testing.T, bin, socket string, uid, gid int, args ...string) (string, string, int) {
	t.Helper()
	cmd := testproc.As(uid, gid, exec.Command(bin, append([]string{"release", "--socket", socket, "--yes", "--min-idle", "0s"}, args...)...))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func parseReport(t *testing.T, out string) report.Release {
	t.Helper()
	var rep report.Release
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("release --json: %v: %q", err, out)
	}
	return rep
}

// Self-service must act only where the caller could ptrace the target
// herself: a setuid-root or setgid-root program she runs, or her own
// process once it is not dumpable, is refused and keeps its fds.
func TestSelfServiceRefusesWhatTheCallerCouldNotPtrace(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	d := startDaemon(t, bin, policyPath, time.Hour)
	uid, gid := testproc.TestUser(t, secName("a"))
	hold := buildHold(t, secName("h"))
	suid := setID(t, hold, secName("su"), 0o755|os.ModeSetuid)
	sgid := setID(t, hold, secName("sg"), 0o755|os.ModeSetgid)

	for _, c := range []struct {
		name, path, mode string
		ready            func(pid int) bool // the attack is set up as meant
	}{
		{"setuid root", suid, "plain", func(pid int) bool { return strings.Fields(statusField(t, pid, "Uid"))[1] == "0" }},
		{"setgid root", sgid, "plain", func(pid int) bool { return strings.Fields(statusField(t, pid, "Gid"))[1] == "0" }},
		{"not dumpable", hold, "nodump", func(pid int) bool {
			fi, err := os.Stat(fmt.Sprintf("/proc/%d/status", pid))
			return err == nil && fi.Sys().(*syscall.Stat_t).Uid == 0
		}},
	} {
		p := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(c.path, "3", c.mode)))
		if !c.ready(p.PID) {
			t.Fatalf("%s: the target is not what the attack needs:\n Uid %s\n Gid %s", c.name, statusField(t, p.PID, "Uid"), statusField(t, p.PID, "Gid"))
		}
		before := ptmxFDs(t, p.PID)
		out, errs, code := releaseAs(t, bin, d.socket, uid, gid, "--pid", strconv.Itoa(p.PID), "--json")
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", c.name, code, errs)
		}
		rep := parseReport(t, out)
		if len(rep.Actions) != 3 {
			t.Errorf("%s: want 3 actions, got %+v", c.name, rep.Actions)
		}
		for _, a := range rep.Actions {
			if a.Result != "skipped" || !strings.Contains(a.Reason, "refused") {
				t.Errorf("%s: %+v", c.name, a)
			}
		}
		if after := ptmxFDs(t, p.PID); len(after) != len(before) || len(before) != 3 {
			t.Errorf("%s: masters %v before, %v after: the daemon touched them", c.name, before, after)
		}
		echoes(t, p, c.name)
		if !strings.Contains(d.logs(), fmt.Sprintf(`"msg":"self-service refused","peer_uid":%d`, uid)) ||
			!strings.Contains(d.logs(), fmt.Sprintf(`"pid":%d,`, p.PID)) {
			t.Errorf("%s: no refusal record in the log", c.name)
		}
		t.Logf("%s: %s", c.name, rep.Actions[0].Reason)
	}

	// The same user's plain process is hers to release: the rule refuses
	// only what it must.
	p := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(hold, "3", "plain")))
	out, errs, code := releaseAs(t, bin, d.socket, uid, gid, "--pid", strconv.Itoa(p.PID), "--json")
	if rep := parseReport(t, out); code != 0 || rep.Count("done") != 3 || len(ptmxFDs(t, p.PID)) != 0 {
		t.Fatalf("her own plain process: exit %d %s %+v", code, errs, rep.Actions)
	}
	echoes(t, p, "plain")

	// uid 0 from another user namespace (mapped to uid 0 here) is not
	// root: a root process's PTYs stay where they are.
	rootHolder := testproc.Start(t, hold, "2", "plain")
	req := fmt.Sprintf(`{"op":"release","pids":[%d],"min_idle":"0s"}`, rootHolder.PID)
	script := `import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(sys.argv[2].encode()+b"\n")
print(s.makefile().readline().strip())`
	nsOut, err := exec.Command("unshare", "--user", "--map-root-user", "/usr/bin/python3", "-c", script, d.socket, req).CombinedOutput()
	if err != nil {
		t.Fatalf("request from a user namespace: %v %s", err, nsOut)
	}
	var resp daemon.Response
	if err := json.Unmarshal(nsOut, &resp); err != nil {
		t.Fatalf("%v: %s", err, nsOut)
	}
	if resp.Report == nil || len(resp.Report.Actions) != 2 || resp.Report.Count("skipped") != 2 ||
		!strings.Contains(resp.Report.Actions[0].Reason, "another user namespace") {
		t.Errorf("uid 0 from a user namespace: %s", nsOut)
	}
	if n := len(ptmxFDs(t, rootHolder.PID)); n != 2 {
		t.Errorf("root's holder lost masters to a namespaced uid 0: %d left", n)
	}
	echoes(t, rootHolder, "root holder")
}

// The check runs again while the target is frozen: a process that turns
// itself non-dumpable between the check before planning and the freeze is
// refused under the freeze, its fds untouched.
func TestSelfServiceChecksAgainUnderTheFreeze(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	d := startDaemon(t, bin, policyPath, time.Hour)
	uid, gid := testproc.TestUser(t, secName("f"))
	hold := buildHold(t, secName("fl"))
	outcomes := map[string]int{}
	var p *testproc.Proc
	for try := 0; try < 60 && outcomes["refused under the freeze"] == 0; try++ {
		if p == nil {
			p = testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(hold, "4", "flip")))
		}
		out, errs, code := releaseAs(t, bin, d.socket, uid, gid, "--pid", strconv.Itoa(p.PID), "--json")
		if code != 0 {
			t.Fatalf("try %d: exit %d: %s", try, code, errs)
		}
		rep := parseReport(t, out)
		masters := len(ptmxFDs(t, p.PID))
		done := rep.Count("done")
		switch {
		case done == 4 && masters == 0:
			outcomes["released while dumpable"]++
			echoes(t, p, "released")
			syscall.Kill(p.PID, syscall.SIGKILL)
			waitGone(t, p.PID)
			p = nil
		case done == 0 && masters == 4 && strings.Contains(rep.Actions[0].Reason, "refused under the freeze"):
			outcomes["refused under the freeze"]++
		case done == 0 && masters == 4 && strings.Contains(rep.Actions[0].Reason, "refused"):
			outcomes["refused before planning"]++
		default:
			t.Fatalf("try %d: %d done, %d masters left: %+v", try, done, masters, rep.Actions)
		}
		if p != nil {
			echoes(t, p, fmt.Sprint("try ", try))
		}
	}
	t.Logf("outcomes: %v", outcomes)
	if outcomes["refused under the freeze"] == 0 {
		t.Error("no release was refused under the freeze: the check is not made again there")
	}
	if !strings.Contains(d.logs(), "self-service refused under the freeze") {
		t.Error("no refusal record for the freeze-time check")
	}
}

// Reasons sent to a caller never name another user's process: here root's
// strace traces the caller's process, and the caller learns neither its
// pid nor its name.
func TestSelfServiceNamesNoOtherUsersProcess(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	d := startDaemon(t, bin, policyPath, time.Hour)
	uid, gid := testproc.TestUser(t, secName("r"))
	p := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(buildHold(t, secName("rh")), "2", "plain")))
	tracer := exec.Command("strace", "-q", "-o", "/dev/null", "-p", strconv.Itoa(p.PID))
	if err := tracer.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tracer.Process.Kill(); tracer.Wait() })
	waitFor(t, 10*time.Second, "strace to attach", func() bool { return statusField(t, p.PID, "TracerPid") != "0" })
	out, errs, code := releaseAs(t, bin, d.socket, uid, gid, "--pid", strconv.Itoa(p.PID), "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	rep := parseReport(t, out)
	if len(rep.Actions) != 2 {
		t.Fatalf("want 2 skipped actions: %+v", rep.Actions)
	}
	pidRE := regexp.MustCompile(`\b` + strconv.Itoa(tracer.Process.Pid) + `\b`)
	for _, a := range rep.Actions {
		if a.Result != "skipped" || pidRE.MatchString(a.Reason) || strings.Contains(a.Reason, "strace") {
			t.Errorf("the caller learns of root's tracer: %+v", a)
		}
	}
	if strings.Contains(out, "strace") || strings.Contains(errs, "strace") {
		t.Errorf("output names strace:\n%s%s", out, errs)
	}
	if n := len(ptmxFDs(t, p.PID)); n != 2 {
		t.Errorf("a traced process lost masters: %d left", n)
	}
	t.Logf("reason sent: %s", rep.Actions[0].Reason)
}

// startPlainDaemon runs a daemon with exactly the given flags (plus its
// lock and --policy), logging to a buffer.
func startPlainDaemon(t *testing.T, bin, policyPath string, args ...string) *daemonProc {
	t.Helper()
	dir := t.TempDir()
	d := &daemonProc{done: make(chan error, 1)}
	d.cmd = exec.Command(bin, append([]string{"daemon", "--policy", policyPath, "--lock", filepath.Join(dir, "lock")}, args...)...)
	d.cmd.Stderr = lockedWriter{d}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		err := <-d.done
		d.done <- err
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logs())
		}
	})
	return d
}

// A process named with bytes that are not UTF-8 (prctl PR_SET_NAME "\xff",
// or a file name the kernel cut mid-character in comm) must not crash the
// daemon: the Prometheus client panics on such label values.
func TestDaemonSurvivesCommsThatAreNotUTF8(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	named := testproc.Start(t, buildHold(t, secName("n")), "1", "name:ff41ff")
	cut := testproc.Start(t, buildHold(t, strings.Repeat("ж", 9)), "1", "plain") // 18 bytes, cut at 15
	for _, withMetrics := range []bool{true, false} {
		args := []string{"--interval", "200ms", "--log-format", "json", "--log-level", "debug"}
		addr := ""
		if withMetrics {
			addr = freePort(t)
			args = append(args, "--metrics", addr)
		}
		d := startPlainDaemon(t, bin, policyPath, args...)
		waitFor(t, 60*time.Second, "five cycles", func() bool {
			select {
			case err := <-d.done:
				d.done <- err
				t.Fatalf("metrics %v: the daemon ended: %v", withMetrics, err)
			default:
			}
			return strings.Count(d.logs(), `"msg":"cycle"`) >= 5
		})
		if strings.Contains(d.logs(), "panic") {
			t.Errorf("metrics %v: a panic (recovered or not) in the log", withMetrics)
		}
		if withMetrics {
			m := scrape(t, addr)
			for _, want := range []string{
				fmt.Sprintf("ptyreclaim_holder_ptys{comm=\"\uFFFDA\uFFFD\",pid=\"%d\"} 1", named.PID),
				fmt.Sprintf("ptyreclaim_holder_ptys{comm=\"жжжжжжж\uFFFD\",pid=\"%d\"} 1", cut.PID),
			} {
				if !strings.Contains(m, want) {
					t.Errorf("metrics lack %q", want)
				}
			}
			if strings.Contains(m, "ptyreclaim_panics_total{") {
				t.Error("panics were counted")
			}
		}
		if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := <-d.done; err != nil {
			t.Errorf("metrics %v: exit after SIGTERM: %v", withMetrics, err)
		}
		d.done <- nil
	}
}

// SIGTERM at any moment of a self-service release must wait for it: no
// target is left stopped, traced, with its signal mask changed, or with
// some of its fds released and others not.
func TestDaemonSIGTERMWaitsForSelfServiceReleases(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	uid, gid := testproc.TestUser(t, secName("t"))
	leak := leakerNamed(t, userName)
	outcomes := map[string]int{}
	// The client connects ~20 ms after it starts here, and its release
	// (scan, then one freeze for 300 fds) takes ~10-30 ms more: 2 ms steps
	// through that, then a few beyond.
	var delays []time.Duration
	for ms := 0; ms <= 60; ms += 2 {
		delays = append(delays, time.Duration(ms))
	}
	delays = append(delays, 80, 120, 200)
	// And rounds that send SIGTERM the moment the target is seen traced:
	// in the middle of its freeze.
	const whenTraced = -1
	for range 8 {
		delays = append(delays, whenTraced)
	}
	for round, delay := range delays {
		when := fmt.Sprintf("SIGTERM after %dms", delay)
		if delay == whenTraced {
			when = "SIGTERM once frozen"
		}
		target := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(leak, "300", "2")))
		sigBlk := statusField(t, target.PID, "SigBlk")
		d := startDaemon(t, bin, policyPath, time.Hour)
		client := testproc.As(uid, gid, exec.Command(bin, "release", "--socket", d.socket, "--yes", "--min-idle", "0s", "--json", "--pid", strconv.Itoa(target.PID)))
		var cout, cerr bytes.Buffer
		client.Stdout, client.Stderr = &cout, &cerr
		if err := client.Start(); err != nil {
			t.Fatal(err)
		}
		clientDone := make(chan struct{})
		go func() { client.Wait(); close(clientDone) }()
		if delay == whenTraced {
			sawFrozen := false
			for deadline := time.Now().Add(20 * time.Second); !sawFrozen && time.Now().Before(deadline); {
				select {
				case <-clientDone:
					deadline = time.Time{} // the release ended unseen
				default:
					sawFrozen = statusField(t, target.PID, "TracerPid") != "0"
					time.Sleep(100 * time.Microsecond)
				}
			}
			if sawFrozen {
				outcomes["SIGTERM seen mid-freeze"]++
			}
		} else {
			time.Sleep(delay * time.Millisecond)
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.done:
			d.done <- err
			if err != nil {
				t.Fatalf("round %d: daemon exit: %v", round, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the daemon did not stop", round)
		}
		<-clientDone
		masters := len(ptmxFDs(t, target.PID))
		switch masters {
		case 300:
			outcomes["untouched"]++
		case 0:
			outcomes["released"]++
			if n := countLines(d.logs(), `"msg":"action"`, fmt.Sprintf(`"pid":%d,`, target.PID)); n != 300 {
				t.Errorf("round %d: %d action records for 300 released fds", round, n)
			}
		default:
			t.Errorf("round %d (%s): %d of 300 masters left: a release was cut in half", round, when, masters)
		}
		if st := statusField(t, target.PID, "State"); strings.HasPrefix(st, "t") || strings.HasPrefix(st, "T") {
			t.Errorf("round %d: target left %s", round, st)
		}
		if tp := statusField(t, target.PID, "TracerPid"); tp != "0" {
			t.Errorf("round %d: target still traced by %s", round, tp)
		}
		if got := statusField(t, target.PID, "SigBlk"); got != sigBlk {
			t.Errorf("round %d: SigBlk %s, was %s", round, got, sigBlk)
		}
		echoes(t, target, fmt.Sprint("round ", round))
		t.Logf("round %d (%s): %d masters left; client: %s", round, when, masters, firstLine(strings.TrimSpace(cerr.String())))
		syscall.Kill(target.PID, syscall.SIGKILL)
		waitGone(t, target.PID)
	}
	t.Logf("outcomes over the SIGTERM delays: %v", outcomes)
	if outcomes["released"] == 0 || outcomes["untouched"] == 0 || outcomes["SIGTERM seen mid-freeze"] == 0 {
		t.Error("the sweep missed the release: want rounds before, during and after it")
	}
}

// One user must not lock everyone out: A holds 16 idle connections, and B
// is still served; A's own extra request gets a clear one-line refusal.
func TestSelfServiceOneUserCannotLockOthersOut(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	d := startDaemon(t, bin, policyPath, time.Hour)
	aUID, aGID := testproc.TestUser(t, secName("la"))
	bUID, bGID := testproc.TestUser(t, secName("lb"))
	leak := leakerNamed(t, userName)
	b := testproc.StartCmd(t, testproc.As(bUID, bGID, exec.Command(leak, "5")))
	a := testproc.StartCmd(t, testproc.As(aUID, aGID, exec.Command(leak, "5")))

	// A's hog: 16 connections, never a request. It reports how many the
	// daemon refused at once (and the first refusal), then, when asked,
	// how many are still held open.
	hog := `import socket,sys,select,time
socks=[]
for i in range(16):
    c=socket.socket(socket.AF_UNIX); c.connect(sys.argv[1]); socks.append(c)
busy=[]; end=time.time()+10
while len(busy)<12 and time.time()<end:
    for c in socks:
        if c not in busy and select.select([c],[],[],0)[0]:
            busy.append(c)
    time.sleep(0.01)
first=busy[0].makefile().readline().strip() if busy else ""
print("ready", len(busy), flush=True)
print(first, flush=True)
sys.stdin.readline()
print(sum(1 for c in socks if c not in busy and not select.select([c],[],[],0)[0]), flush=True)
sys.stdin.readline()`
	h := testproc.StartCmd(t, testproc.As(aUID, aGID, exec.Command("/usr/bin/python3", "-c", hog, d.socket)))
	if h.Ready != "12" {
		t.Fatalf("the daemon refused %s of A's 16 connections, want 12 (4 per user)", h.Ready)
	}
	var refusal daemon.Response
	if line := <-h.Lines; json.Unmarshal([]byte(line), &refusal) != nil || !refusal.Busy || !strings.Contains(refusal.Error, "busy") {
		t.Errorf("refusal line: %q", line)
	}

	// B is served while A holds her four.
	if _, errs, code := releaseAs(t, bin, d.socket, bUID, bGID, "--pid", strconv.Itoa(b.PID)); code != 0 || len(ptmxFDs(t, b.PID)) != 0 {
		t.Fatalf("B locked out: exit %d: %s", code, errs)
	}
	// A's fifth gets one clear line.
	_, errs, code := releaseAs(t, bin, d.socket, aUID, aGID, "--pid", strconv.Itoa(a.PID))
	if code != ExitFailure || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "busy") || strings.Contains(errs, "broken pipe") {
		t.Errorf("A over her limit: exit %d: %q", code, errs)
	}
	if n := len(ptmxFDs(t, a.PID)); n != 5 {
		t.Errorf("A's refused request released %d masters", 5-n)
	}
	// The attack was still on while B was served.
	fmt.Fprintln(h.Stdin, "check")
	if held := <-h.Lines; held != "4" {
		t.Errorf("A held %s connections at the end, want 4: the test did not hold the slots", held)
	}
	fmt.Fprintln(h.Stdin, "done")
	if !strings.Contains(d.logs(), fmt.Sprintf(`"msg":"self-service refused","peer_uid":%d`, aUID)) {
		t.Error("no refusal record for A's extra connections")
	}
}

// Requests that arrive together share scans instead of one full scan each.
func TestSelfServiceRequestsShareScans(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	d := startDaemon(t, bin, policyPath, time.Hour)
	leak := leakerNamed(t, userName)
	const n = 4 // root's per-user limit
	var targets []*testproc.Proc
	for range n {
		targets = append(targets, testproc.Start(t, leak, "5"))
	}
	scans := func() int {
		re := regexp.MustCompile(`(?m)^ptyreclaim_scan_duration_seconds_count (\d+)$`)
		m := re.FindStringSubmatch(scrape(t, d.metrics))
		if m == nil {
			t.Fatal("no scan count in the metrics")
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
	waitFor(t, 10*time.Second, "the first cycle's scan", func() bool { return scans() >= 1 })
	before := scans()
	// Connect all, then send all at once.
	var conns []net.Conn
	for range n {
		c, err := net.Dial("unix", d.socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		fmt.Fprintf(c, `{"op":"release","pids":[%d],"min_idle":"0s"}`+"\n", targets[i].PID)
	}
	for i, c := range conns {
		line, err := bufio.NewReader(c).ReadString('\n')
		var resp daemon.Response
		if err != nil || json.Unmarshal([]byte(line), &resp) != nil || resp.Report == nil || resp.Report.Count("done") != 5 {
			t.Errorf("request %d: %v %q", i, err, line)
		}
		if left := len(ptmxFDs(t, targets[i].PID)); left != 0 {
			t.Errorf("request %d: %d masters left", i, left)
		}
	}
	took := scans() - before
	t.Logf("%d requests at once took %d scans", n, took)
	if took < 1 || took >= n {
		t.Errorf("%d requests at once took %d scans: they do not share", n, took)
	}
}

// countLines counts the lines that contain every one of parts.
func countLines(text string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(text, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// unitExecStart returns the packaged unit's ExecStart command line.
func unitExecStart(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../packaging/systemd/ptyreclaim.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatal("the unit has no ExecStart")
	return nil
}

// consoleRecord is one line of the console log format:
// time, level, message, then the fields as JSON.
type consoleRecord struct {
	level, msg string
	fields     map[string]any
}

func consoleRecords(text string) []consoleRecord {
	var out []consoleRecord
	for _, line := range strings.Split(text, "\n") {
		parts := strings.SplitN(line, "\t", 4)
		if len(parts) < 3 {
			continue
		}
		r := consoleRecord{level: parts[1], msg: parts[2]}
		if len(parts) == 4 {
			_ = json.Unmarshal([]byte(parts[3]), &r.fields)
		}
		out = append(out, r)
	}
	return out
}

// The audit trail is on by default: run with exactly the packaged unit's
// ExecStart arguments (in a private mount and network namespace, where
// /etc/ptyreclaim/policy.yaml, /run/ptyreclaim and 127.0.0.1:9477 are the
// test's own), every action inside a process and every refused
// self-service request is one record on stderr, as the journal gets it.
func TestDaemonAuditTrailUnderTheUnitCommandLine(t *testing.T) {
	bin := buildForNobody(t)
	argv := unitExecStart(t)
	if argv[0] != "/usr/bin/ptyreclaim" || argv[1] != "daemon" {
		t.Fatalf("ExecStart %q: not the daemon", argv)
	}
	dir := t.TempDir()
	// Copied into the overlay's /etc/ptyreclaim by the setup below (it
	// mounts a tmpfs over /run, so the file is read from here first).
	policyPath := filepath.Join(dir, "policy.yaml")
	writePolicy(t, policyPath, strings.ReplaceAll(daemonPolicy, "  min_idle: 1s\n", "  min_idle: 1ms\n"))
	uid, gid := testproc.TestUser(t, secName("u"))
	leaker := testproc.Start(t, leakerNamed(t, allowedName), "5")
	refused := testproc.StartCmd(t, testproc.As(uid, gid, exec.Command(buildHold(t, secName("uh")), "2", "nodump")))
	time.Sleep(10 * time.Millisecond) // idle for longer than min_idle

	setup := `set -e
ip link set lo up
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/ptyreclaim "$U" "$W"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$U,workdir=$W" /etc
mkdir -p /etc/ptyreclaim
cp "$POLICY" /etc/ptyreclaim/policy.yaml
exec "$@"`
	d := &daemonProc{done: make(chan error, 1)}
	// --kill-child: a test that gives up must not leave the daemon running;
	// WaitDelay: nor hang in Wait on the stderr pipe the daemon holds.
	d.cmd = exec.Command("unshare", append([]string{"--mount", "--net", "--fork", "--kill-child", "sh", "-c", setup, "sh", bin}, argv[1:]...)...)
	d.cmd.Env = append(os.Environ(), "U="+filepath.Join(dir, "upper"), "W="+filepath.Join(dir, "work"), "POLICY="+policyPath)
	d.cmd.WaitDelay = 5 * time.Second
	d.cmd.Stderr = lockedWriter{d}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	var daemonPID int
	t.Cleanup(func() {
		if daemonPID > 0 {
			syscall.Kill(daemonPID, syscall.SIGKILL)
		}
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("daemon stderr:\n%s", d.logs())
		}
	})
	waitFor(t, 20*time.Second, "the daemon's first cycle", func() bool {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("the daemon ended: %v\n%s", err, d.logs())
		default:
		}
		return len(ptmxFDs(t, leaker.PID)) == 0
	})
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", d.cmd.Process.Pid, d.cmd.Process.Pid))
	if err != nil || len(strings.Fields(string(kids))) != 1 {
		t.Fatalf("the daemon under unshare: %v %q", err, kids)
	}
	daemonPID, _ = strconv.Atoi(strings.Fields(string(kids))[0])

	// A user asks, on the unit's socket, for a process she may not ptrace.
	rel := exec.Command("nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", daemonPID), fmt.Sprintf("--net=/proc/%d/ns/net", daemonPID),
		"--setuid", strconv.Itoa(uid), "--setgid", strconv.Itoa(gid), "--",
		bin, "release", "--yes", "--min-idle", "0s", "--pid", strconv.Itoa(refused.PID))
	if out, err := rel.CombinedOutput(); err != nil {
		t.Fatalf("release through the unit's socket: %v %s", err, out)
	}
	if err := syscall.Kill(daemonPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-d.done; err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	d.done <- nil

	actions, refusals := 0, 0
	for _, r := range consoleRecords(d.logs()) {
		pid, _ := r.fields["pid"].(float64)
		switch {
		case r.msg == "action" && int(pid) == leaker.PID:
			if r.level != "INFO" || r.fields["result"] != "done" || r.fields["fd"] == nil || r.fields["comm"] != allowedName {
				t.Errorf("action record: %+v", r)
			}
			actions++
		case r.msg == "self-service refused" && int(pid) == refused.PID:
			if r.fields["peer_uid"] != float64(uid) || !strings.Contains(fmt.Sprint(r.fields["reason"]), "not dumpable") {
				t.Errorf("refusal record: %+v", r)
			}
			refusals++
		}
	}
	if actions != 5 || refusals != 1 {
		t.Errorf("under %q: %d action records for 5 released fds, %d refusal records for 1 refusal", argv, actions, refusals)
	}
	if n := len(ptmxFDs(t, refused.PID)); n != 2 {
		t.Errorf("the refused target lost masters: %d left", n)
	}
}
