package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// daemonProc is a real `ptyreclaim daemon` started by a test.
type daemonProc struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	log     bytes.Buffer
	done    chan error
	socket  string
	metrics string
}

func (d *daemonProc) logs() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

type lockedWriter struct{ d *daemonProc }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.d.mu.Lock()
	defer w.d.mu.Unlock()
	return w.d.log.Write(b)
}

// freePort returns a loopback port nobody listens on.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startDaemon(t *testing.T, bin, policyPath string, interval time.Duration) *daemonProc {
	t.Helper()
	dir := t.TempDir()
	openToAll(t, filepath.Join(dir, "x"))
	d := &daemonProc{done: make(chan error, 1), socket: filepath.Join(dir, "s.sock"), metrics: freePort(t)}
	d.cmd = exec.Command(bin, "daemon", "--policy", policyPath, "--interval", interval.String(),
		"--metrics", d.metrics, "--socket", d.socket, "--lock", filepath.Join(dir, "lock"),
		"--log-format", "json", "--log-level", "info")
	d.cmd.Stderr = lockedWriter{d}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		_ = d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logs())
		}
	})
	waitFor(t, 10*time.Second, "the daemon's socket", func() bool {
		_, err := os.Stat(d.socket)
		return err == nil
	})
	return d
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func writePolicy(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func scrape(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// leakerNamed copies the leaking program under a name, so policy rules can
// tell the leakers apart by comm.
func leakerNamed(t *testing.T, name string) string {
	t.Helper()
	return copyNamed(t, testproc.BuildC(t, "leak", testproc.LeakMasters), name)
}

// copyNamed copies a built program under another name beside it, runnable
// by every user: policy rules and comm see that name.
func copyNamed(t *testing.T, src, name string) string {
	t.Helper()
	dst := filepath.Join(filepath.Dir(src), name)
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
	openToAll(t, dst)
	return dst
}

// Leaker names carry our pid, so that a test run elsewhere on the machine
// (its own daemon, its own leakers) cannot match this run's rules.
var (
	allowedName  = fmt.Sprintf("lok%d", os.Getpid())
	deniedName   = fmt.Sprintf("lno%d", os.Getpid())
	userName     = fmt.Sprintf("lus%d", os.Getpid())
	daemonPolicy = `version: 1
defaults:
  min_idle: 1s
pressure:
  min_idle: 1s
self_service: true
allow:
  - name: ` + allowedName + `
    ptys: reclaim
deny:
  - name: ` + deniedName + `
`
)

func TestDaemonEndToEnd(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	const interval = time.Second
	d := startDaemon(t, bin, policyPath, interval)

	allowed := testproc.Start(t, leakerNamed(t, allowedName), "20")
	denied := testproc.Start(t, leakerNamed(t, deniedName), "20")
	// Eligible once idle for min_idle (1s); then within two intervals.
	took := waitFor(t, time.Second+2*interval+time.Second, "the allowlisted leaker to be reclaimed", func() bool {
		return len(ptmxFDs(t, allowed.PID)) == 0
	})
	t.Logf("allowlisted leaker reclaimed %s after it started (interval %s, min_idle 1s)", took, interval)
	echoes(t, allowed, "alive after the daemon's release")
	// Another cycle passes: the deny-listed one is still untouched.
	time.Sleep(2 * interval)
	if n := len(ptmxFDs(t, denied.PID)); n != 20 {
		t.Fatalf("deny-listed leaker lost masters: %d left", n)
	}

	m := scrape(t, d.metrics)
	for _, want := range []string{
		`ptyreclaim_actions_total{kind="pty",result="reclaimed"} 20`,
		fmt.Sprintf(`ptyreclaim_holder_leaked_ptys{comm="%s",pid="%d"} 20`, deniedName, denied.PID),
		"ptyreclaim_pool_limit ",
		"ptyreclaim_scan_duration_seconds_count ",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(d.logs(), `"msg":"action"`) || !strings.Contains(d.logs(), fmt.Sprintf(`"pid":%d`, allowed.PID)) {
		t.Error("no structured action record in the log")
	}

	// A second daemon on the same lock refuses to start.
	second := exec.Command(bin, "daemon", "--policy", policyPath, "--lock", filepath.Join(filepath.Dir(d.socket), "lock"))
	out, err := second.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another ptyreclaim daemon is running") {
		t.Errorf("second daemon: %v %s", err, out)
	}

	// SIGHUP with a broken file keeps the old policy working.
	writePolicy(t, policyPath, "version: 1\nallow:\n  - nmae: oops\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the failed reload in the log", func() bool {
		return strings.Contains(d.logs(), "policy reload failed")
	})
	again := testproc.Start(t, leakerNamed(t, allowedName), "5")
	waitFor(t, time.Second+2*interval+time.Second, "a reclaim under the kept policy", func() bool {
		return len(ptmxFDs(t, again.PID)) == 0
	})
	if !strings.Contains(scrape(t, d.metrics), `ptyreclaim_policy_reloads_total{result="error"} 1`) {
		t.Error("metrics lack the failed reload")
	}

	// SIGTERM ends it cleanly.
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-d.done:
		d.done <- err // for Cleanup
		if err != nil {
			t.Fatalf("daemon exit after SIGTERM: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("daemon did not stop on SIGTERM")
	}
	if _, err := os.Stat(d.socket); !os.IsNotExist(err) {
		t.Error("socket left behind")
	}
	if !strings.Contains(d.logs(), "daemon stopping") {
		t.Error("no stop record")
	}
}

func TestSelfService(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	d := startDaemon(t, bin, policyPath, time.Hour) // no cycle gets in the way
	aUID, aGID := testproc.TestUser(t, "ptyreclaim-ta")
	bUID, bGID := testproc.TestUser(t, "ptyreclaim-tb")
	leak := leakerNamed(t, userName)
	a := testproc.StartCmd(t, testproc.As(aUID, aGID, exec.Command(leak, "7")))
	b := testproc.StartCmd(t, testproc.As(bUID, bGID, exec.Command(leak, "7")))

	release := func(uid, gid int, args ...string) (string, string, int) {
		cmd := testproc.As(uid, gid, exec.Command(bin, append([]string{"release", "--socket", d.socket, "--yes", "--min-idle", "0s"}, args...)...))
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

	// A releases A's own leaked PTYs.
	before := testproc.PTYCount(t)
	out, errs, code := release(aUID, aGID, "--pid", strconv.Itoa(a.PID), "--json")
	if code != 0 {
		t.Fatalf("A's release: exit %d: %s", code, errs)
	}
	var rep report.Release
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if rep.Count("done") != 7 || len(ptmxFDs(t, a.PID)) != 0 || before-testproc.PTYCount(t) != 7 {
		t.Fatalf("A's PTYs: %+v, %d masters left", rep.Actions, len(ptmxFDs(t, a.PID)))
	}
	echoes(t, a, "A still works")

	// B's are not reachable from A, by pid or by --all.
	_, errs, code = release(aUID, aGID, "--pid", strconv.Itoa(b.PID))
	if code != ExitUsage || !strings.Contains(errs, "not your process") {
		t.Errorf("A asking for B's pid: exit %d: %q", code, errs)
	}
	if _, errs, code = release(aUID, aGID, "--all"); code != 0 {
		t.Errorf("A --all: exit %d: %s", code, errs)
	}
	if n := len(ptmxFDs(t, b.PID)); n != 7 {
		t.Fatalf("B lost masters through A's requests: %d left", n)
	}

	// Garbage does not stop the daemon.
	for _, garbage := range []string{"garbage\n", `{"op":"release","pids":"x"}` + "\n", `{"op":"shred"}` + "\n",
		`{"op":"release","pids":[1],"evil":true}` + "\n", strings.Repeat("x", 100<<10)} {
		c, err := net.Dial("unix", d.socket)
		if err != nil {
			t.Fatalf("dial after garbage: %v", err)
		}
		fmt.Fprint(c, garbage)
		line, _ := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if !strings.Contains(line, `"error"`) {
			t.Errorf("garbage %.30q: answer %q", garbage, line)
		}
	}
	// A client that connects and says nothing is dropped after the timeout
	// without blocking others.
	idle, err := net.Dial("unix", d.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()

	// B, still served, releases B's own.
	if _, errs, code = release(bUID, bGID, "--name", userName); code != 0 {
		t.Fatalf("B's release after the garbage: exit %d: %s", code, errs)
	}
	if n := len(ptmxFDs(t, b.PID)); n != 0 {
		t.Fatalf("B's masters left: %d", n)
	}
	select {
	case err := <-d.done:
		t.Fatalf("daemon died: %v", err)
	default:
	}

	// With self_service off, users are refused.
	writePolicy(t, policyPath, strings.Replace(daemonPolicy, "self_service: true", "self_service: false", 1))
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "the reload", func() bool { return strings.Count(d.logs(), "policy reloaded") >= 1 })
	c := testproc.StartCmd(t, testproc.As(aUID, aGID, exec.Command(leak, "1")))
	_, errs, code = release(aUID, aGID, "--pid", strconv.Itoa(c.PID))
	if code == 0 || !strings.Contains(errs, "self-service is off") || len(ptmxFDs(t, c.PID)) != 1 {
		t.Errorf("self-service off: exit %d: %q", code, errs)
	}
}

// Under systemd (Type=notify) the daemon must say READY=1 once it serves,
// feed the watchdog, say RELOADING=1 and READY=1 around a reload (SIGHUP),
// and say STOPPING=1 on SIGTERM. systemd cannot run
// here, so the test plays its part: a datagram socket in NOTIFY_SOCKET.
func TestDaemonNotifiesSystemd(t *testing.T) {
	bin := buildForNobody(t)
	dir := t.TempDir()
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, daemonPolicy)
	notifyPath := filepath.Join(dir, "notify")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	cmd := exec.Command(bin, "daemon", "--policy", policyPath, "--interval", "1h", "--lock", filepath.Join(dir, "lock"))
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "WATCHDOG_USEC=200000")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	want := []string{"READY=1", "WATCHDOG=1", "WATCHDOG=1"}
	for _, w := range want {
		select {
		case m := <-msgs:
			if !strings.HasPrefix(m, w) {
				t.Fatalf("got %q, want %q", m, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s within 10s", w)
		}
	}
	// SIGHUP (what the unit's ExecReload sends): RELOADING=1 with the
	// kernel's CLOCK_MONOTONIC now, then READY=1 once the policy is read.
	var before unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &before); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	next := func(what string) string {
		for {
			select {
			case m := <-msgs:
				if m != "WATCHDOG=1" {
					return m
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no %s within 10s", what)
			}
		}
	}
	m := next("RELOADING=1")
	usec, ok := strings.CutPrefix(m, "RELOADING=1\nMONOTONIC_USEC=")
	if n, err := strconv.ParseInt(usec, 10, 64); !ok || err != nil || n < before.Nano()/1000 || n > before.Nano()/1000+10e6 {
		t.Fatalf("after SIGHUP got %q, want RELOADING=1 and MONOTONIC_USEC= CLOCK_MONOTONIC now (%d us)", m, before.Nano()/1000)
	}
	if m := next("READY=1"); !strings.HasPrefix(m, "READY=1") {
		t.Fatalf("after RELOADING=1 got %q, want READY=1", m)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-msgs:
			if m == "STOPPING=1" {
				if err := cmd.Wait(); err != nil {
					t.Fatalf("exit after SIGTERM: %v", err)
				}
				return
			}
		case <-deadline:
			t.Fatal("no STOPPING=1 after SIGTERM")
		}
	}
}

// SIGTERM at any moment of a cycle must never leave a target half done:
// stopped, still traced, or with some of its fds released and others not
// (one freeze covers all fds of a process, and the daemon finishes the
// process it is working on before it exits).
func TestDaemonSIGTERMNeverInterruptsARelease(t *testing.T) {
	bin := buildForNobody(t)
	policyPath := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, policyPath, strings.ReplaceAll(daemonPolicy, "  min_idle: 1s\n", "  min_idle: 1ms\n"))
	leak := leakerNamed(t, allowedName)
	outcomes := map[string]int{}
	// The first cycle runs from ~15 ms to ~90 ms after the exec here, the
	// freeze in its last ~50 ms: the delays sweep across all of it. On a
	// slower machine (the emulated arm64 VM, packaging/vm) every delay is
	// stretched by how much longer one unsignalled first cycle takes there.
	scale := float64(firstCycle(t, bin, policyPath, leak)) / float64(90*time.Millisecond)
	if scale < 1 {
		scale = 1
	}
	t.Logf("delays scaled by %.1f", scale)
	for round, ms := range []time.Duration{0, 10, 20, 30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 90, 110, 150, 250} {
		delay := time.Duration(float64(ms) * scale)
		target := testproc.Start(t, leak, "300", "3")
		time.Sleep(5 * time.Millisecond) // idle for longer than min_idle
		dir := t.TempDir()
		cmd := exec.Command(bin, "daemon", "--policy", policyPath, "--interval", "1h", "--lock", filepath.Join(dir, "lock"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay * time.Millisecond) // the first cycle runs at start
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		earlyEnd := false
		select {
		case err := <-done:
			// SIGTERM before main has set up its handler ends the process
			// by default: nothing can be frozen yet, as the checks below show.
			if ee, ok := err.(*exec.ExitError); ok && ee.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGTERM {
				earlyEnd = true
			} else if err != nil {
				t.Fatalf("round %d: daemon exit: %v", round, err)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("round %d: daemon did not stop", round)
		}
		masters := len(ptmxFDs(t, target.PID))
		switch {
		case masters == 300 && earlyEnd:
			outcomes["ended before its handler was set"]++
		case masters == 300:
			outcomes["untouched"]++
		case masters == 0:
			outcomes["released"]++
		default:
			t.Errorf("round %d (SIGTERM after %dms): %d of 300 masters left: a release was cut in half", round, delay, masters)
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", target.PID))
		if err != nil {
			t.Fatalf("round %d: target gone: %v", round, err)
		}
		for _, bad := range []string{"State:\tt", "State:\tT"} {
			if strings.Contains(string(st), bad) {
				t.Errorf("round %d: target left stopped", round)
			}
		}
		if !strings.Contains(string(st), "TracerPid:\t0\n") {
			t.Errorf("round %d: target still traced", round)
		}
		echoes(t, target, fmt.Sprint("round ", round))
		// End it now: eighteen rounds of 300 PTYs would empty the pool.
		syscall.Kill(target.PID, syscall.SIGKILL)
		waitGone(t, target.PID)
	}
	t.Logf("outcomes over the SIGTERM delays: %v", outcomes)
	if outcomes["released"] == 0 {
		t.Error("no round released anything: the sweep missed the injection window")
	}
}

// firstCycle measures, without any signal, how long a daemon takes from its
// exec to the end of the release in its first cycle.
func firstCycle(t *testing.T, bin, policyPath, leak string) time.Duration {
	t.Helper()
	target := testproc.Start(t, leak, "300", "3")
	time.Sleep(5 * time.Millisecond)
	cmd := exec.Command(bin, "daemon", "--policy", policyPath, "--interval", "1h", "--lock", filepath.Join(t.TempDir(), "lock"))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the first cycle's release", func() bool { return len(ptmxFDs(t, target.PID)) == 0 })
	took := time.Since(start)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	_ = cmd.Wait()
	syscall.Kill(target.PID, syscall.SIGKILL)
	waitGone(t, target.PID)
	return took
}
