package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// Issue 8: 4,000 leaked masters, max_per_run 1000: 1,000 were released,
// exit 0, nothing said. Now, with 1,100 and max_per_run 1000, the cap says
// how many it left and why (dry run, table, JSON) and exits 4.
func TestReleaseCapSaysWhatItLeftAndExits4(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "hostile", hostileSrc), "1100")
	pid := strconv.Itoa(p.PID)
	if n := len(ptmxFDs(t, p.PID)); n != 1100 {
		t.Fatalf("the kernel shows %d masters, want 1100", n)
	}
	pol := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	if err := os.WriteFile(pol, []byte("version: 1\ndefaults:\n  max_per_run: 1000\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--pid", pid, "--min-idle", "0s", "--policy", pol, "--yes"}
	start := testproc.PTYCount(t)
	const left = "left: 100 leaked fds in 1 processes left in place: the cap of 1000 PTYs per process per run (max_per_run) is reached; run release again"

	// The dry run already says it.
	out, errs, code := run(t, append([]string{"release", "--dry-run"}, args...)...)
	if code != 0 || !strings.Contains(out, "would release 1000 PTY fds") || !strings.Contains(out, left) {
		t.Errorf("dry run: exit %d: %s\n%s", code, errs, out)
	}

	// Run 1, JSON: 1000 done, 100 left, exit 4.
	out, errs, code = run(t, append([]string{"release", "--json"}, args...)...)
	if code != ExitLeft {
		t.Fatalf("run 1: exit %d, want %d: %s", code, ExitLeft, errs)
	}
	var r report.Release
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if done := r.Count("done"); done != 1000 || r.Left != 100 || !strings.Contains(r.LeftReason, "max_per_run") {
		t.Errorf("run 1: %d done, left %d %q", done, r.Left, r.LeftReason)
	}
	if !strings.Contains(out, `"left": 100`) || !strings.Contains(errs, "100 leaked fds left in place by max_per_run; run release again") {
		t.Errorf("run 1: stdout lacks left, or stderr %q", errs)
	}
	if got := start - testproc.PTYCount(t); got != 1000 {
		t.Errorf("run 1 freed %d PTYs in the kernel's count, want 1000", got)
	}

	// Run 2, table: the last 100, nothing left, exit 0.
	out, errs, code = run(t, append([]string{"release"}, args...)...)
	if code != 0 || !strings.Contains(out, "100 done, 0 skipped, 0 failed") || strings.Contains(out, "left:") {
		t.Errorf("run 2: exit %d: %s\n%s", code, errs, out)
	}
	if got := start - testproc.PTYCount(t); got != 1100 {
		t.Errorf("two runs freed %d PTYs in the kernel's count, want 1100", got)
	}
	echoes(t, p, "still here after 1100")
}

// A release that does nothing says why, per named process, in the table
// and in JSON ("notes"), and its JSON actions are [], never null.
func TestReleaseThatDoesNothingSaysWhy(t *testing.T) {
	live := testproc.Start(t, testproc.BuildC(t, "hostile", hostileSrc), "2", "liveone")
	watched := testproc.Start(t, "python3", "-c", `
import os, select, sys
ep = select.epoll()
for _ in range(3):
    m, s = os.openpty()
    os.close(s)
    ep.register(m, select.EPOLLIN)
print("ready", flush=True)
sys.stdin.read()
`)
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	before := testproc.PTYCount(t)
	skipWatched := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writePolicy(t, skipWatched, "version: 1\ndefaults:\n  watched: skip\n")

	cases := []struct {
		pid  int
		args []string
		want string
	}{
		{live.PID, []string{"--min-idle", "1h"}, "every PTY of pid " + strconv.Itoa(live.PID) + " (liveone) is live: nothing to release (2 PTY fds;"},
		{watched.PID, []string{"--min-idle", "0s", "--policy", skipWatched}, "pid " + strconv.Itoa(watched.PID) + " (python3): nothing to release: its 3 leak candidates are all skipped: still registered in the holder's epoll/kqueue set"},
		{sleeper.Process.Pid, []string{"--min-idle", "0s"}, "pid " + strconv.Itoa(sleeper.Process.Pid) + " (sleep): nothing to release: it holds no PTY fd"},
	}
	for _, c := range cases {
		args := append([]string{"release", "--yes", "--pid", strconv.Itoa(c.pid)}, c.args...)
		out, errs, code := run(t, args...)
		if code != 0 || !strings.Contains(out, "note: "+c.want) {
			t.Errorf("%v: exit %d: %s\n%s", args, code, errs, out)
		}
		out, errs, code = run(t, append(args, "--json")...)
		var r report.Release
		if err := json.Unmarshal([]byte(out), &r); code != 0 || err != nil {
			t.Fatalf("%v --json: exit %d, %v: %s", args, code, err, errs)
		}
		if len(r.Notes) != 1 || !strings.HasPrefix(r.Notes[0], c.want) {
			t.Errorf("%v --json: notes %q", args, r.Notes)
		}
		if c.pid != watched.PID && !strings.Contains(out, `"actions": []`) {
			t.Errorf("%v --json: actions is not []:\n%s", args, out)
		}
	}
	if testproc.PTYCount(t) != before {
		t.Error("a release that did nothing changed the PTY count")
	}
}

func TestReleaseHelpWarnsAboutMethodClose(t *testing.T) {
	out, _, code := run(t, "release", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"garbage-collected runtime", "finalizers closed 8 keep-alive sockets", "exits 4"} {
		if !strings.Contains(out, want) {
			t.Errorf("release --help lacks %q:\n%s", want, out)
		}
	}
}
