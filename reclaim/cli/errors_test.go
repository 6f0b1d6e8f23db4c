package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// Bad input gets exit code 2 and one clear line on stderr.
func TestUsageErrorsAreOneLineExit2(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"audit", "--bogus"}, "unknown flag: --bogus"},
		{[]string{"audit", "--min-idle", "five"}, "invalid argument"},
		{[]string{"audit", "--min-idle", "-1s"}, "must not be negative"},
		{[]string{"audit", "--pid", "999999999"}, "--pid 999999999: no such process"},
		{[]string{"audit", "--pid", "0"}, "not a process id"},
		{[]string{"audit", "--policy", missing}, "nope.yaml"},
		{[]string{"status", "--top", "-3"}, "--top -3"},
		{[]string{"frobnicate"}, "unknown command"},
		{[]string{"audit", "extra"}, "unknown command"},
		{[]string{"--log-level", "loud", "status"}, "--log-level"},
		{[]string{"policy", "check", missing}, "nope.yaml"},
	}
	for _, c := range cases {
		out, errs, code := run(t, c.args...)
		if code != ExitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, ExitUsage, errs)
		}
		if !strings.Contains(errs, c.want) || strings.Count(errs, "\n") != 1 {
			t.Errorf("%v: stderr %q, want one line containing %q", c.args, errs, c.want)
		}
		if out != "" {
			t.Errorf("%v: printed to stdout on error: %q", c.args, out)
		}
	}
}

func TestFailOnLeaksExits3(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "2")
	pid := strconv.Itoa(p.PID)
	if _, errs, code := run(t, "audit", "--pid", pid, "--min-idle", "0s", "--fail-on-leaks"); code != ExitLeaks {
		t.Fatalf("exit %d, want %d: %s", code, ExitLeaks, errs)
	}
	// Idle bar of an hour: the fresh PTYs are live, so no leak: exit 0.
	if _, errs, code := run(t, "audit", "--pid", pid, "--min-idle", "1h", "--fail-on-leaks"); code != ExitOK {
		t.Fatalf("exit %d, want 0: %s", code, errs)
	}
}

func TestAuditTableReadsAt80Columns(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "300")
	out, errs, code := run(t, "audit", "--pid", strconv.Itoa(p.PID), "--min-idle", "0s")
	if code != 0 {
		t.Fatal(errs)
	}
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if !strings.Contains(lines[0], "300 leaked in 1 process; 0 stuck children") {
		t.Errorf("summary: %q", lines[0])
	}
	for _, l := range lines {
		if len(l) > 80 {
			t.Errorf("line over 80 columns: %q", l)
		}
	}
	// 300 masters of one process read alike: one row, not 300.
	if n := strings.Count(out, "unattached"); n != 1 {
		t.Errorf("want one grouped row, got %d:\n%s", n, out)
	}
}

// As a user who is not root, audit shows what it can and says that it needs
// root for the rest; it still exits 0.
func TestAuditAsNonRootSaysItNeedsRoot(t *testing.T) {
	testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "1") // a root process it cannot read
	bin := buildForNobody(t)
	cmd := exec.Command(bin, "audit")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("audit as nobody: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "not root") || !strings.Contains(string(out), "run as root") {
		t.Errorf("non-root audit should say it needs root:\n%s", out)
	}
}

// buildForNobody builds the ptyreclaim binary where an unprivileged user
// can run it (t.TempDir's directories are private to root).
func buildForNobody(t *testing.T) string {
	t.Helper()
	if p, ok := testproc.Prebuilt(t, "ptyreclaim"); ok {
		return p
	}
	bin := filepath.Join(t.TempDir(), "ptyreclaim")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/ptyreclaim").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	openToAll(t, bin)
	return bin
}

// openToAll makes the directories above path reachable by every user.
func openToAll(t *testing.T, path string) {
	t.Helper()
	for d := filepath.Dir(path); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}
