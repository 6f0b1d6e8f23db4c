// Package testproc builds and runs the real leaking programs the tests
// check ptyreclaim against: small C programs compiled with gcc in the test,
// started, and waited on until they print "ready".
package testproc

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PrebuiltEnv names a directory of test programs built ahead of time, for a
// machine without a compiler (the arm64 VM, packaging/vm/arm64-tests.sh):
// BuildC and the other builders then take DIR/name instead of compiling.
const PrebuiltEnv = "PTYRECLAIM_PREBUILT"

// Prebuilt returns DIR/name when $PTYRECLAIM_PREBUILT is set, and fails the
// test when that program is missing there; ok is false when it is not set.
func Prebuilt(t testing.TB, name string) (path string, ok bool) {
	t.Helper()
	dir := os.Getenv(PrebuiltEnv)
	if dir == "" {
		return "", false
	}
	path = filepath.Join(dir, name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("%s=%s: no prebuilt %s: %v", PrebuiltEnv, dir, name, err)
	}
	return path, true
}

// BuildC compiles a C program with gcc into the test's temp dir (or takes
// the prebuilt one, see PrebuiltEnv).
func BuildC(t testing.TB, name, src string) string {
	t.Helper()
	dir := t.TempDir()
	if p, ok := Prebuilt(t, name); ok {
		// A copy in the test's own directory, as gcc would have made it:
		// callers copy it under other names next to it.
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bin := filepath.Join(dir, name)
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
		return bin
	}
	c := filepath.Join(dir, name+".c")
	bin := filepath.Join(dir, name)
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("gcc", "-O1", "-Wall", "-pthread", "-o", bin, c).CombinedOutput()
	if err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	return bin
}

// Proc is a started test program.
type Proc struct {
	Cmd   *exec.Cmd
	PID   int
	Stdin io.WriteCloser
	// Lines delivers the program's stdout lines after "ready".
	Lines chan string
	// Ready is the text after "ready" on the ready line (for example child pids).
	Ready string
}

// Start runs a program and waits until it prints a line starting with
// "ready". The program is killed when the test ends.
func Start(t testing.TB, path string, args ...string) *Proc {
	t.Helper()
	return StartCmd(t, exec.Command(path, args...))
}

// StartCmd is Start for a prepared command.
func StartCmd(t testing.TB, cmd *exec.Cmd) *Proc {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true // so cleanup can end its children too
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &Proc{Cmd: cmd, PID: cmd.Process.Pid, Stdin: stdin, Lines: make(chan string, 1024)}
	t.Cleanup(func() {
		_ = syscall.Kill(-p.PID, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sawReady := false
		for sc.Scan() {
			line := sc.Text()
			if !sawReady && strings.HasPrefix(line, "ready") {
				sawReady = true
				ready <- strings.TrimSpace(strings.TrimPrefix(line, "ready"))
				continue
			}
			if sawReady {
				p.Lines <- line
			}
		}
		close(p.Lines)
		if !sawReady {
			close(ready)
		}
	}()
	select {
	case r, ok := <-ready:
		if !ok {
			t.Fatalf("%s exited before it was ready", cmd.Path)
		}
		p.Ready = r
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not get ready in 30s", cmd.Path)
	}
	return p
}

// ReadyInts parses the numbers on the ready line (for example child pids).
func (p *Proc) ReadyInts(t testing.TB) []int {
	t.Helper()
	var out []int
	for _, f := range strings.Fields(p.Ready) {
		n, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("ready line %q: %v", p.Ready, err)
		}
		out = append(out, n)
	}
	return out
}

// Alive reports whether pid exists and is not a zombie.
func Alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// PTYCount reads the kernel's count of PTYs in use.
func PTYCount(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pty/nr")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// FDLink reads /proc/PID/fd/FD.
func FDLink(pid, fd int) (string, error) {
	return os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd))
}
