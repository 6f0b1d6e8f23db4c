//go:build linux

package testproc

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NodeApp is reclaim/inspector/testdata/node/app.js running in its own pid
// and mount namespace (unshare --pid --fork --mount-proc), so that no
// node-pty path can ever signal the machine's processes (a pty.open()
// terminal's destroy() runs kill(-1, SIGHUP)). PID is node's pid on the
// host.
type NodeApp struct {
	PID    int
	Stdin  io.WriteCloser
	Events chan map[string]any
	Ready  map[string]any

	mu     sync.Mutex
	stderr bytes.Buffer
}

// NodeAppDir is the app's directory, from a package directory under
// reclaim/.
func NodeAppDir(t testing.TB, fromPkg string) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join(fromPkg, "testdata/node"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules/@lydell/node-pty")); err != nil {
		t.Fatalf("node-pty is not installed: run `npm ci` in %s (.ci/run does)", dir)
	}
	return dir
}

// StartNodeApp starts the app with terms idle pty.open() terminals and
// waits for its ready event.
func StartNodeApp(t testing.TB, dir string, terms int) *NodeApp {
	t.Helper()
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "node", "app.js", strconv.Itoa(terms))
	cmd.Dir = dir
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	a := &NodeApp{Stdin: stdin, Events: make(chan map[string]any, 100)}
	cmd.Stderr = &lockedWriter{a: a}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // unshare --kill-child takes node with it
		_ = cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				a.Events <- ev
			}
		}
		close(a.Events)
	}()
	select {
	case ev := <-a.Events:
		if ev["event"] != "ready" {
			t.Fatalf("first event %v", ev)
		}
		a.Ready = ev
	case <-time.After(20 * time.Second):
		t.Fatal("the node app did not start")
	}
	a.PID = onlyChild(t, cmd.Process.Pid) // unshare forks node: its only child
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(a.PID) + "/exe"); filepath.Base(exe) != "node" {
		t.Fatalf("pid %d runs %s, not node", a.PID, exe)
	}
	return a
}

type lockedWriter struct{ a *NodeApp }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.a.mu.Lock()
	defer w.a.mu.Unlock()
	os.Stderr.Write(b)
	return w.a.stderr.Write(b)
}

// Stderr is what node wrote to stderr so far (its inspector messages).
func (a *NodeApp) Stderr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stderr.String()
}

func onlyChild(t testing.TB, pid int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + strconv.Itoa(pid) + "/children")
		if f := strings.Fields(string(b)); len(f) == 1 {
			n, _ := strconv.Atoi(f[0])
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d has children %q", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FDs are the fds the app's streams own: each terminal's master and the
// slave fd of its tty.ReadStream, and the raw master no stream owns.
func (a *NodeApp) FDs() (masters, slaves []int, raw int) {
	for _, x := range a.Ready["terms"].([]any) {
		m := x.(map[string]any)
		masters = append(masters, int(m["master"].(float64)))
		slaves = append(slaves, int(m["slave"].(float64)))
	}
	return masters, slaves, int(a.Ready["raw"].(float64))
}

// Get asks the app's HTTP server for its hit counter.
func (a *NodeApp) Get(t testing.TB) int {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(int(a.Ready["port"].(float64))) + "/")
	if err != nil {
		t.Fatalf("the app stopped serving: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, _ := strconv.Atoi(string(b))
	return n
}

// Next waits for an event of the given kind, collecting the others.
func (a *NodeApp) Next(t testing.TB, kind string, seen *[]map[string]any) map[string]any {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-a.Events:
			if !ok {
				t.Fatalf("the app ended while waiting for %q; saw %v", kind, *seen)
			}
			*seen = append(*seen, ev)
			if ev["event"] == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %q event; saw %v", kind, *seen)
		}
	}
}

// PTYFDs lists pid's fds on /dev/ptmx or a /dev/pts slave.
func PTYFDs(t testing.TB, pid int) []int {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/fd"
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range entries {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || (link != "/dev/ptmx" && !strings.HasPrefix(link, "/dev/pts/")) {
			continue
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fd)
	}
	return out
}

// StillWorks checks the app serves HTTP (its counter moved on by one from
// hits) and spawns a PTY, and that it reported no exception and no exit;
// it returns every event seen meanwhile.
func (a *NodeApp) StillWorks(t testing.TB, hits int, seen *[]map[string]any) {
	t.Helper()
	if n := a.Get(t); n != hits+1 {
		t.Errorf("counter %d, want %d", n, hits+1)
	}
	io.WriteString(a.Stdin, "spawn\n")
	a.Next(t, "spawned", seen)
	for _, ev := range *seen {
		if ev["event"] == "exception" || ev["event"] == "exit" {
			t.Errorf("the app reported %v", ev)
		}
	}
}
