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

// Issue 8 item 9 through the commands: a user owning an ancestor of the
// policy swaps in a root-owned, permissive policy. policy check, audit and
// release refuse it with one line naming that directory, exit 2, and the
// leak the permissive policy would release stays.
func TestPolicySwappedUnderAUserDirectoryIsRefused(t *testing.T) {
	uid, gid := testproc.TestUser(t, "ptyrswap")
	base := testproc.PolicyDir(t)
	etc := filepath.Join(base, "etc")
	strict := filepath.Join(etc, "ptyreclaim")
	spare := filepath.Join(etc, "spare")
	for _, d := range []string{etc, strict, spare} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(strict, "policy.yaml")
	writeRootFile(t, path, "version: 1\n")
	writeRootFile(t, filepath.Join(spare, "policy.yaml"), "version: 1\nallow:\n  - name: \"*\"\n    ptys: reclaim\n")
	if out, errs, code := run(t, "policy", "check", path); code != 0 {
		t.Fatalf("policy check before: exit %d: %s%s", code, errs, out)
	}
	if err := os.Chown(etc, uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, mv := range [][]string{{strict, strict + ".orig"}, {spare, strict}} {
		if out, err := testproc.As(uid, gid, exec.Command("mv", mv...)).CombinedOutput(); err != nil {
			t.Fatalf("the user's mv %v: %v %s", mv, err, out)
		}
	}
	p := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "2")
	before := testproc.PTYCount(t)
	want := "directory " + etc + " is owned by uid " + strconv.Itoa(uid) + ", not root"
	for _, args := range [][]string{
		{"policy", "check", path},
		{"audit", "--policy", path},
		{"release", "--policy", path, "--yes", "--min-idle", "0s"},
	} {
		out, errs, code := run(t, args...)
		if code != ExitUsage || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, want) || out != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want exit 2 and one line with %q", args, code, errs, out, want)
		}
	}
	if testproc.PTYCount(t) != before || len(ptmxFDs(t, p.PID)) != 2 {
		t.Error("a refused policy changed something")
	}
}

// A FIFO and a device at the policy path: one line, exit 2, and the FIFO's
// blocked writer is not let through.
func TestPolicyCheckRefusesFIFOAndDevice(t *testing.T) {
	dir := testproc.PolicyDir(t)
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	dev := filepath.Join(dir, "zero.yaml")
	if err := syscall.Mknod(dev, syscall.S_IFCHR|0o644, 1<<8|5); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{fifo: "not a regular file (a named pipe)", dev: "not a regular file (a device)"} {
		out, errs, code := run(t, "policy", "check", path)
		if code != ExitUsage || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, want) || out != "" {
			t.Errorf("policy check %s: exit %d, stderr %q", path, code, errs)
		}
	}
}

// policy check of a file with no deny rule at all: no warning that
// terminal servers are "undenied", and the one built-in list is printed.
func TestPolicyCheckListsTerminalServersAsProtected(t *testing.T) {
	path := filepath.Join(testproc.PolicyDir(t), "policy.yaml")
	writeRootFile(t, path, "version: 1\nallow:\n  - name: node\n    ptys: reclaim\n")
	out, errs, code := run(t, "policy", "check", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if strings.Contains(out, "undenied") || strings.Contains(out, "Warning") {
		t.Errorf("policy check warns:\n%s", out)
	}
	for _, want := range []string{"and terminal servers, by comm or executable name:", " sshd,", " tmux*,", " *getty,", " systemd*,", " ptyreclaim."} {
		if !strings.Contains(out, want) {
			t.Errorf("policy check lacks %q:\n%s", want, out)
		}
	}
}

func writeRootFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // whatever the umask
		t.Fatal(err)
	}
}
