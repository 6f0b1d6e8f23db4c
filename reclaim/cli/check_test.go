package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// npdResult is what node-problem-detector's custom plugin monitor makes of
// one run of a plugin.
type npdResult struct {
	status  string // OK, NonOK or Unknown
	message string
}

// runLikeNPD runs a plugin the way node-problem-detector's custom plugin
// monitor does (pkg/custompluginmonitor/plugin/plugin.go): a timeout
// (default 5 s) after which the plugin is killed, at most 4 KiB read from
// stdout, the output trimmed and cut at max_output_length (default 80), and
// exit 0 OK, 1 NonOK, anything else Unknown.
func runLikeNPD(t *testing.T, timeout time.Duration, maxOutput int, bin string, args ...string) npdResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(io.LimitReader(stdout, 4096))
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	var ee *exec.ExitError
	if werr != nil && !errors.As(werr, &ee) {
		t.Fatalf("plugin: %v", werr)
	}
	msg := strings.TrimSpace(string(out))
	if ctx.Err() != nil {
		msg = "Timeout when running plugin: " + msg
	}
	if len(msg) > maxOutput {
		msg = msg[:maxOutput]
	}
	switch cmd.ProcessState.Sys().(syscall.WaitStatus).ExitStatus() {
	case 0:
		return npdResult{"OK", msg}
	case 1:
		return npdResult{"NonOK", msg}
	}
	return npdResult{"Unknown", msg}
}

// growMasters opens as many more PTY masters as each stdin line says and
// answers "ok <total>": a leaker that crosses a threshold while watched.
const growMasters = `
#define _XOPEN_SOURCE 600 /* posix_openpt, grantpt, unlockpt */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(void) {
	int total = 0;
	char line[64];
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		for (int n = atoi(line); n > 0; n--) {
			int m = posix_openpt(O_RDWR | O_NOCTTY);
			if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
			total++;
		}
		printf("ok %d\n", total);
		fflush(stdout);
	}
	return 0;
}
`

func grow(t *testing.T, p *testproc.Proc, n int) {
	t.Helper()
	fmt.Fprintf(p.Stdin, "%d\n", n)
	select {
	case l := <-p.Lines:
		if !strings.HasPrefix(l, "ok ") {
			t.Fatalf("leaker said %q", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the leaker did not answer")
	}
}

func TestCheckFollowsTheNodeProblemDetectorContract(t *testing.T) {
	bin := buildForNobody(t)
	pol := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	// Thresholds no other process on a test machine reaches.
	writePolicy(t, pol, "version: 1\npressure:\n  warn: 99%\n  critical: 100%\nholders:\n  warn_at: 150\n  reclaim_at: 1000\n")
	leaker := testproc.Start(t, testproc.BuildC(t, "grow", growMasters))
	me := "pid " + strconv.Itoa(leaker.PID) + " "

	npd := func() npdResult { return runLikeNPD(t, 5*time.Second, 80, bin, "check", "--policy", pol) }
	grow(t, leaker, 100)
	if r := npd(); r.status != "OK" || !strings.HasPrefix(r.message, "OK: ") {
		t.Fatalf("below the threshold: %+v", r)
	}
	grow(t, leaker, 100) // 200 >= warn_at 150
	r := npd()
	if r.status != "NonOK" || !strings.Contains(r.message, me+"(grow) holds 200 PTYs") {
		t.Fatalf("above the threshold: %+v", r)
	}
	// Repeated runs agree: the plugin is a pure reading of the machine.
	for i := 0; i < 3; i++ {
		if again := npd(); again != r {
			t.Fatalf("run %d: %+v, first %+v", i, again, r)
		}
	}
	if _, errs, code := run(t, "release", "--pid", strconv.Itoa(leaker.PID), "--min-idle", "0s", "--yes"); code != 0 {
		t.Fatalf("release: exit %d: %s", code, errs)
	}
	if r := npd(); r.status != "OK" || strings.Contains(r.message, me) {
		t.Fatalf("after the release: %+v", r)
	}
}

func TestCheckLineIsOneBoundedLineWhateverTheNames(t *testing.T) {
	bin := buildForNobody(t)
	pol := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, pol, "version: 1\nholders:\n  warn_at: 3\n  reclaim_at: 1000\n")
	src := testproc.BuildC(t, "grow", growMasters)
	// Three heavy holders with hostile names: more problems than 80 bytes
	// hold, and bytes that must not reach the Kubernetes API.
	for _, name := range []string{"\x1b[31mred", "new\nline", "\xff\xfe"} {
		grow(t, testproc.Start(t, copyNamed(t, src, name)), 5)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "check", "--policy", pol)
	cmd.Stdout = &out
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != CheckProblem {
		t.Fatalf("check: %v, want exit %d; stdout %q", err, CheckProblem, out.String())
	}
	line := out.String()
	if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		t.Fatalf("want exactly one line, got %q", line)
	}
	line = strings.TrimSuffix(line, "\n")
	if len(line) > CheckMaxLine {
		t.Fatalf("line of %d bytes, more than %d: %q", len(line), CheckMaxLine, line)
	}
	for i := 0; i < len(line); i++ {
		if line[i] < 0x20 || line[i] > 0x7e {
			t.Fatalf("byte %#x at %d in %q", line[i], i, line)
		}
	}
	// What NPD keeps is the whole line: its cut never falls mid-message.
	if r := runLikeNPD(t, 5*time.Second, 80, bin, "check", "--policy", pol); r.message != line {
		t.Fatalf("NPD kept %q of %q", r.message, line)
	}
}

func TestCheckUnknownIsExit2WithOneLine(t *testing.T) {
	bin := buildForNobody(t)
	bad := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, bad, "version: 1\nnot_a_key: 1\n")
	for _, args := range [][]string{
		{"check", "--policy", bad},
		{"check", "--policy", "/nonexistent/policy.yaml"},
		{"check", "--no-such-flag"},
	} {
		r := runLikeNPD(t, 5*time.Second, 80, bin, args...)
		if r.status != "Unknown" || !strings.HasPrefix(r.message, "unknown: ") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	// As a user who cannot read other processes, check cannot say OK.
	nobody := exec.Command(bin, "check")
	nobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var out bytes.Buffer
	nobody.Stdout = &out
	err := nobody.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != CheckUnknown || !strings.HasPrefix(out.String(), "unknown: ") {
		t.Fatalf("as nobody: %v, stdout %q", err, out.String())
	}
}

// buildShim builds testdata/shim under containerd's shim's name (or takes
// the prebuilt "shim", see testproc.PrebuiltEnv).
func buildShim(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "containerd-shim-runc-v2")
	if p, ok := testproc.Prebuilt(t, "shim"); ok {
		b, err := os.ReadFile(p)
		if err == nil {
			err = os.WriteFile(bin, b, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		return bin
	}
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/shim").CombinedOutput(); err != nil {
		t.Fatalf("build shim: %v\n%s", err, out)
	}
	return bin
}

func TestTerminalServerLeakReleasedOnlyByAnExactAllowRule(t *testing.T) {
	bin := buildShim(t)
	shim := testproc.Start(t, bin, "20")
	pid := strconv.Itoa(shim.PID)
	masters := len(ptmxFDs(t, shim.PID))
	if masters != 20 {
		t.Fatalf("the kernel shows %d masters, want 20", masters)
	}
	// Every master is in the shim's epoll set: the audit says so, and the
	// shim is a terminal server, so by default it is only reported.
	for _, f := range findingsOf(auditJSON(t, "--pid", pid, "--min-idle", "0s"), shim.PID) {
		if f.Watched == nil || !*f.Watched || f.Verdict != "skip" || !strings.Contains(f.Reason, "terminal server") {
			t.Fatalf("by default: %+v", f)
		}
	}
	dir := testproc.PolicyDir(t)
	policies := map[string]string{
		"name glob":   "  - name: containerd-shim*\n",
		"exe glob":    "  - exe: " + filepath.Dir(bin) + "/*\n",
		"doublestar":  "  - exe: /**/containerd-shim-runc-v2\n",
		"exact":       "  - exe: " + bin + "\n",
		"exact name":  "  - name: containerd-shim-runc-v2\n",
		"none at all": "",
	}
	for _, name := range []string{"none at all", "name glob", "exe glob", "doublestar"} {
		pol := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		text := "version: 1\ndefaults:\n  watched: reclaim\n"
		if policies[name] != "" {
			text += "allow:\n" + policies[name] + "    ptys: reclaim\n"
		}
		writePolicy(t, pol, text)
		before := testproc.PTYCount(t)
		for _, args := range [][]string{
			{"release", "--policy", pol, "--min-idle", "0s", "--yes", "--json"},
			{"release", "--policy", pol, "--pid", pid, "--min-idle", "0s", "--yes", "--json"},
		} {
			if _, errs, code := run(t, args...); code != 0 {
				t.Fatalf("%s: %v: exit %d: %s", name, args, code, errs)
			}
		}
		if got := len(ptmxFDs(t, shim.PID)); got != 20 || testproc.PTYCount(t) != before {
			t.Fatalf("%s: the shim was touched: %d masters left, PTYs %d -> %d", name, got, before, testproc.PTYCount(t))
		}
	}
	pol := filepath.Join(dir, "exact.yaml")
	writePolicy(t, pol, "version: 1\ndefaults:\n  watched: reclaim\nallow:\n"+policies["exact"]+"    ptys: reclaim\n")
	before := testproc.PTYCount(t)
	if _, errs, code := run(t, "release", "--policy", pol, "--min-idle", "0s", "--yes"); code != 0 {
		t.Fatalf("exact rule: exit %d: %s", code, errs)
	}
	if got := len(ptmxFDs(t, shim.PID)); got != 0 {
		t.Fatalf("exact rule: %d masters left", got)
	}
	if after := testproc.PTYCount(t); after > before-20 {
		t.Fatalf("exact rule: PTYs in use %d -> %d, want 20 fewer", before, after)
	}
	echoes(t, shim, "still serving")
	// policy check says plainly that the exact rule lifts the protection.
	out, errs, code := run(t, "policy", "check", pol)
	if code != 0 || !strings.Contains(out, "names the terminal server containerd-shim-runc-v2 exactly") {
		t.Fatalf("policy check: exit %d: %s%s", code, out, errs)
	}
}
