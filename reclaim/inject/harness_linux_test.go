//go:build linux

package inject

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// binDir holds the test programs, built once per test binary.
var binDir string

func TestMain(m *testing.M) {
	if os.Getenv(releaserEnv) != "" {
		os.Exit(runReleaser())
	}
	dir, err := os.MkdirTemp("", "inject-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildOnce sync.Map // name -> *buildResult

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// program builds (once) and returns the path of a test program.
func program(t testing.TB, name string) string {
	t.Helper()
	if p, ok := testproc.Prebuilt(t, name); ok {
		return p
	}
	v, _ := buildOnce.LoadOrStore(name, &buildResult{})
	b := v.(*buildResult)
	b.once.Do(func() {
		b.path = filepath.Join(binDir, name)
		var cmd *exec.Cmd
		switch name {
		case "gotarget", "gostate":
			src := filepath.Join(binDir, name+"-src")
			if err := os.MkdirAll(src, 0o755); err != nil {
				b.err = err
				return
			}
			data, err := os.ReadFile("testdata/" + name + "/main.go")
			if err != nil {
				b.err = err
				return
			}
			os.WriteFile(filepath.Join(src, "main.go"), data, 0o644)
			os.WriteFile(filepath.Join(src, "go.mod"), []byte("module "+name+"\n\ngo 1.22\n"), 0o644)
			cmd = exec.Command("go", "build", "-o", b.path, ".")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOWORK=off")
		default:
			args := []string{"-O1", "-Wall", "-pthread", "-o", b.path, "testdata/" + name + ".c"}
			if runtime.GOARCH == "amd64" {
				// filtered.c pushes registers in inline asm.
				args = append([]string{"-mno-red-zone"}, args...)
			}
			switch name {
			case "uvloop":
				args = append(args, "-luv")
			case "evloop":
				args = append(args, "-lev")
			}
			cmd = exec.Command("gcc", args...)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("building %s: %v\n%s", name, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// target is a running test program whose stdout is read line by line.
type target struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	pid   int
	ready []string
	lines chan string

	mu        sync.Mutex
	eintr     []string
	sigs      int
	lastSeq   int
	seqErrors []string
	stderr    strings.Builder
}

func startTarget(t testing.TB, path string, args ...string) *target {
	t.Helper()
	return startCmd(t, exec.Command(path, args...))
}

func startCmd(t testing.TB, cmd *exec.Cmd) *target {
	t.Helper()
	tg := launch(t, cmd, 1<<12)
	line := tg.expect("READY")
	tg.ready = strings.Fields(line)[1:]
	return tg
}

// launch starts cmd with its stdin and stdout piped to the test and its
// stderr kept; the process is killed when the test ends.
func launch(t testing.TB, cmd *exec.Cmd, lines int) *target {
	t.Helper()
	tg := &target{t: t, cmd: cmd, lines: make(chan string, lines)}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &lockedWriter{mu: &tg.mu, b: &tg.stderr}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tg.stdin, tg.pid = stdin, cmd.Process.Pid
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	go tg.read(stdout)
	return tg
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (tg *target) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		tg.mu.Lock()
		switch {
		case strings.HasPrefix(line, "N "):
			n, err := strconv.Atoi(line[2:])
			if err != nil || n != tg.lastSeq+1 {
				tg.seqErrors = append(tg.seqErrors, fmt.Sprintf("got %q after %d", line, tg.lastSeq))
			}
			if err == nil {
				tg.lastSeq = n
			}
			tg.mu.Unlock()
			continue
		case line == "SIG":
			tg.sigs++
			tg.mu.Unlock()
			continue
		case strings.HasPrefix(line, "EINTR"):
			tg.eintr = append(tg.eintr, line)
			tg.mu.Unlock()
			continue
		}
		tg.mu.Unlock()
		tg.lines <- line
	}
	close(tg.lines)
}

// expect returns the next plain line, which must start with prefix.
func (tg *target) expect(prefix string) string {
	tg.t.Helper()
	select {
	case line, ok := <-tg.lines:
		if !ok {
			tg.t.Fatalf("pid %d: output ended while waiting for %q (stderr: %s)", tg.pid, prefix, tg.stderrText())
		}
		if !strings.HasPrefix(line, prefix) {
			tg.t.Fatalf("pid %d: got %q, want a line starting with %q", tg.pid, line, prefix)
		}
		return line
	case <-time.After(30 * time.Second):
		tg.t.Fatalf("pid %d: no %q line (stderr: %s)", tg.pid, prefix, tg.stderrText())
	}
	return ""
}

func (tg *target) stderrText() string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return tg.stderr.String()
}

func (tg *target) send(line string) {
	tg.t.Helper()
	if _, err := io.WriteString(tg.stdin, line+"\n"); err != nil {
		tg.t.Fatalf("pid %d: writing %q: %v", tg.pid, line, err)
	}
}

// echo proves the target still serves its stdin correctly.
func (tg *target) echo(word string) {
	tg.t.Helper()
	tg.send(word)
	if got := tg.expect("ECHO"); got != "ECHO "+word {
		tg.t.Fatalf("pid %d: echo got %q, want %q", tg.pid, got, "ECHO "+word)
	}
}

// count returns the target's SIGUSR1 and EINTR counters.
func (tg *target) count() (sigs, eintrs int) {
	tg.t.Helper()
	tg.send("COUNT")
	f := strings.Fields(tg.expect("COUNT"))
	sigs, _ = strconv.Atoi(f[1])
	eintrs, _ = strconv.Atoi(f[2])
	return sigs, eintrs
}

func (tg *target) eintrLines() []string {
	tg.mu.Lock()
	defer tg.mu.Unlock()
	return append([]string(nil), tg.eintr...)
}

func (tg *target) readyFDs() []int {
	var fds []int
	for _, s := range tg.ready {
		fd, err := strconv.Atoi(s)
		if err != nil {
			tg.t.Fatalf("bad READY field %q", s)
		}
		fds = append(fds, fd)
	}
	return fds
}

func (tg *target) startTime() uint64 {
	tg.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", tg.pid))
	if err != nil {
		tg.t.Fatal(err)
	}
	st, err := procfs.ParseStat(data)
	if err != nil {
		tg.t.Fatal(err)
	}
	return st.StartTime
}

func (tg *target) fdLink(fd int) string {
	link, err := testproc.FDLink(tg.pid, fd)
	if err != nil {
		return "closed"
	}
	return link
}

func (tg *target) fdFlags(fd int) uint64 {
	tg.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", tg.pid, fd))
	if err != nil {
		tg.t.Fatal(err)
	}
	fi, err := procfs.ParseFDInfo(data)
	if err != nil {
		tg.t.Fatal(err)
	}
	return uint64(fi.Flags)
}

// ptyIndex returns the tty-index of a master fd in the target.
func (tg *target) ptyIndex(fd int) int {
	tg.t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", tg.pid, fd))
	if err != nil {
		tg.t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "tty-index:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err == nil {
				return n
			}
		}
	}
	tg.t.Fatalf("fd %d of pid %d has no tty-index", fd, tg.pid)
	return -1
}

// ptsExists says whether /dev/pts/N is still there (the initial devpts
// instance, where the test targets open their masters).
func ptsExists(index int) bool {
	_, err := os.Stat(fmt.Sprintf("/dev/pts/%d", index))
	return err == nil
}

func testLogger(t testing.TB) *zap.Logger {
	if tb, ok := t.(*testing.T); ok {
		return zaptest.NewLogger(tb, zaptest.Level(zap.InfoLevel))
	}
	return zap.NewNop()
}

func reclaim(t testing.TB, tg *target, fds []int, m Method) Report {
	t.Helper()
	rep, err := Reclaim(context.Background(), Target{PID: tg.pid, StartTime: tg.startTime(), FDs: fds, Method: m}, testLogger(t))
	if err != nil {
		t.Fatalf("Reclaim: %v (report %+v)", err, rep)
	}
	return rep
}

// threadsStopped lists the target's threads that are left in a stop.
func threadsStopped(pid int) []string {
	tids, _ := listTasks(pid)
	var out []string
	for _, tid := range tids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/stat", pid, tid))
		if err != nil {
			continue
		}
		if st, err := procfs.ParseStat(data); err == nil && (st.State == 't' || st.State == 'T') {
			out = append(out, fmt.Sprintf("%d:%c", tid, st.State))
		}
	}
	return out
}

func tracerOf(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	st, _ := procfs.ParseStatus(data)
	return st.TracerPID
}

var _ = unix.Getpid
var _ = syscall.SIGUSR1

// startCmdLine starts a helper that does not print READY.
func startCmdLine(t testing.TB, path string, args ...string) *target {
	t.Helper()
	return launch(t, exec.Command(path, args...), 64)
}
