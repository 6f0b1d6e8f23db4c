package policy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// permissivePolicy is what an attacker would like the daemon to run:
// every process allowlisted, orphans killed.
const permissivePolicy = "version: 1\nallow:\n  - name: \"*\"\n    ptys: reclaim\n    orphans: kill\n"

// testUser creates a real user for the test and removes it afterwards.
func testUser(t *testing.T, prefix string) (uid, gid int) {
	t.Helper()
	name := fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
	_ = exec.Command("userdel", name).Run() // a leftover of a killed run
	if out, err := exec.Command("useradd", "-M", "-N", "-r", "-s", "/usr/sbin/nologin", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	uid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	out, err = exec.Command("id", "-g", name).Output()
	if err != nil {
		t.Fatal(err)
	}
	gid, _ = strconv.Atoi(strings.TrimSpace(string(out)))
	return uid, gid
}

func mkdir(t *testing.T, path string, uid int, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func oneLine(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Load succeeded, want an error containing %q", want)
	}
	if msg := err.Error(); !strings.Contains(msg, want) || strings.Contains(msg, "\n") {
		t.Fatalf("Load error %q, want one line containing %q", msg, want)
	}
}

// Issue 8 item 9: a user who owns an ancestor directory (here .../etc)
// renames the root-owned policy directory aside and moves in another
// root-owned directory holding a root-owned, permissive policy. Every file
// and the policy's own directory are still root's: only the walk from /
// sees the user's directory above them.
func TestLoadRefusesAncestorOwnedByUser(t *testing.T) {
	uid, gid := testUser(t, "ptyrpol")
	base := secureDir(t)
	etc := filepath.Join(base, "etc")
	mkdir(t, etc, 0, 0o755)
	strict := filepath.Join(etc, "ptyreclaim")
	mkdir(t, strict, 0, 0o755)
	path := writePolicy(t, strict, validPolicy, 0, 0o644)
	examples := filepath.Join(etc, "examples")
	mkdir(t, examples, 0, 0o755)
	writePolicy(t, examples, permissivePolicy, 0, 0o644)

	if p, err := Load(path); err != nil || p.Allow[0].Name != "node" {
		t.Fatalf("Load before the attack = %v, %v", p, err)
	}
	// The directory is handed to the user (as a careless package or an
	// admin's chown -R might).
	if err := os.Chown(etc, uid, gid); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{strict, strict + ".orig"}, {examples, strict}} {
		mv := exec.Command("mv", args...)
		mv.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		if out, err := mv.CombinedOutput(); err != nil {
			t.Fatalf("the user's mv %v: %v\n%s", args, err, out)
		}
	}
	// The swap happened: the file at path is now the permissive one, and
	// it and its directory are root's, mode 644 and 755.
	if data, _ := os.ReadFile(path); string(data) != permissivePolicy {
		t.Fatalf("the attack did not swap the policy: %q", data)
	}
	_, err := Load(path)
	oneLine(t, err, fmt.Sprintf("directory %s is owned by uid %d, not root", etc, uid))

	// A group-writable ancestor is refused the same way.
	if err := os.Chown(etc, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(etc, 0o775); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	oneLine(t, err, fmt.Sprintf("directory %s (mode 0775) is writable by group or others", etc))
}

// A symlink anywhere in the path is refused, even one to a good directory.
func TestLoadRefusesSymlinkComponent(t *testing.T) {
	base := secureDir(t)
	real := filepath.Join(base, "real")
	mkdir(t, real, 0, 0o755)
	writePolicy(t, real, validPolicy, 0, 0o644)
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(real, "policy.yaml")); err != nil {
		t.Fatalf("Load(real path) = %v", err)
	}
	_, err := Load(filepath.Join(link, "policy.yaml"))
	oneLine(t, err, fmt.Sprintf("path component %s is a symlink", link))
}

// wchan reads where the kernel has pid sleeping.
func wchan(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/wchan", pid))
	return string(b)
}

// A FIFO at the path is refused without being opened: a writer blocked in
// open(2) on it stays blocked. Opening it for reading, even O_NONBLOCK,
// would let that writer through (a side effect root must not have).
func TestLoadRefusesFIFOWithoutOpeningIt(t *testing.T) {
	dir := secureDir(t)
	fifo := filepath.Join(dir, "policy.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	writer := exec.Command("sh", "-c", `echo x > "$0"`, fifo)
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	pid := writer.Process.Pid
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); _ = writer.Wait() })
	for wchan(pid) != "wait_for_partner" { // the writer is blocked in open
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); strings.Contains(string(st), ") Z") {
			t.Fatal("writer exited")
		}
		time.Sleep(10 * time.Millisecond)
	}

	_, err := Load(fifo)
	oneLine(t, err, "not a regular file (a named pipe)")

	// Had Load opened the FIFO, the kernel would have woken the writer
	// (it leaves wait_for_partner at once). Give it time to show; this
	// bounds nothing, a regression fails whatever the delay.
	time.Sleep(300 * time.Millisecond)
	if w := wchan(pid); w != "wait_for_partner" {
		t.Fatalf("the writer was let through by Load's open: now in %q", w)
	}
}

// A device node at the path (here one like /dev/zero) is refused as a
// device before it is opened.
func TestLoadRefusesDevice(t *testing.T) {
	dir := secureDir(t)
	dev := filepath.Join(dir, "policy.yaml")
	if err := syscall.Mknod(dev, syscall.S_IFCHR|0o644, 1<<8|5); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dev)
	oneLine(t, err, "not a regular file (a device)")
}
