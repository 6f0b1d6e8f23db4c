package runtimes

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

var npmOnce sync.Once

// nodeApp is testdata/node: node-pty from the npm registry, pinned by its
// package-lock.json. .ci/run installs it with npm ci; so does the first
// test that needs it when it is missing (a fresh clone).
func nodeApp(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs("testdata/node")
	if err != nil {
		t.Fatal(err)
	}
	installed := filepath.Join(dir, "node_modules", "@lydell", "node-pty")
	npmOnce.Do(func() {
		if _, err := os.Stat(installed); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("npm ci in %s: %v\n%s", dir, err, out)
		}
	})
	if _, err := os.Stat(installed); err != nil {
		t.Fatalf("node-pty is not installed: run (cd %s && npm ci) as .ci/run does", dir)
	}
	return dir
}

// startNode runs the app in its own pid namespace (node-pty's destroy() of
// a pty.open() terminal signals every process: inside, that is only the
// app's). The shell reports node's exit status as its own, 128+signal
// when a signal ended it.
func startNode(t testing.TB, events string) *target {
	t.Helper()
	dir := nodeApp(t)
	cmd := exec.Command("unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "/bin/sh", "-c", `node --expose-gc app.js; exit $?`)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "EVENTS="+events)
	p := testproc.StartCmd(t, cmd)
	port, err := strconv.Atoi(p.Ready)
	if err != nil {
		t.Fatalf("ready line %q", p.Ready)
	}
	// unshare -> sh (pid 1 inside) -> node.
	var node int
	for deadline := time.Now().Add(10 * time.Second); node == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, sh := range children(p.PID) {
			if kids := children(sh); len(kids) == 1 {
				node = kids[0]
			}
		}
	}
	if node == 0 {
		t.Fatal("no node process under unshare")
	}
	rel := []int{node}
	for _, k := range children(node) {
		if comm(k) == "node" { // the helper that inherited the masters
			rel = append(rel, k)
		}
	}
	if len(rel) != 2 {
		t.Fatalf("node's children %v: no helper", children(node))
	}
	return &target{Proc: p, PID: node, Release: rel, Port: port, ExitCode: 7}
}

func comm(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return string(trimNL(b))
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n') {
		b = b[:len(b)-1]
	}
	return b
}

var nodeRuntime = runtime{Name: "node", Start: startNode, Unwatched: true}

func TestNodePTY(t *testing.T) { runAll(t, nodeRuntime) }
