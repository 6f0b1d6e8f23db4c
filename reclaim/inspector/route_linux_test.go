package inspector

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

// nodeApp is testdata/node/app.js running in its own pid namespace (so
// that no node-pty path can ever signal the machine's processes), seen by
// its pid on the host.
type nodeApp struct {
	pid    int
	stdin  io.WriteCloser
	events chan map[string]any
	ready  map[string]any
}

func startNodeApp(t *testing.T, terms int) *nodeApp {
	t.Helper()
	dir, err := filepath.Abs("testdata/node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules/@lydell/node-pty")); err != nil {
		t.Fatalf("node-pty is not installed: run `npm ci` in %s (.ci/run does)", dir)
	}
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "node", "app.js", strconv.Itoa(terms))
	cmd.Dir = dir
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // unshare --kill-child takes node with it
		_ = cmd.Wait()
	})
	a := &nodeApp{stdin: stdin, events: make(chan map[string]any, 100)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev map[string]any
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				a.events <- ev
			}
		}
		close(a.events)
	}()
	select {
	case ev := <-a.events:
		if ev["event"] != "ready" {
			t.Fatalf("first event %v", ev)
		}
		a.ready = ev
	case <-time.After(20 * time.Second):
		t.Fatal("the node app did not start")
	}
	a.pid = onlyChild(t, cmd.Process.Pid) // unshare forks node: its only child
	if exe, _ := os.Readlink("/proc/" + strconv.Itoa(a.pid) + "/exe"); filepath.Base(exe) != "node" {
		t.Fatalf("pid %d runs %s, not node", a.pid, exe)
	}
	return a
}

func onlyChild(t *testing.T, pid int) int {
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

func (a *nodeApp) fds() (masters, slaves []int, raw int) {
	for _, x := range a.ready["terms"].([]any) {
		m := x.(map[string]any)
		masters = append(masters, int(m["master"].(float64)))
		slaves = append(slaves, int(m["slave"].(float64)))
	}
	return masters, slaves, int(a.ready["raw"].(float64))
}

func (a *nodeApp) get(t *testing.T) int {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(int(a.ready["port"].(float64))) + "/")
	if err != nil {
		var evs []map[string]any
		for ev := range a.events {
			evs = append(evs, ev)
		}
		t.Fatalf("the app stopped serving: %v; events %v", err, evs)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, _ := strconv.Atoi(string(b))
	return n
}

// next waits for an event of the given kind, collecting the others.
func (a *nodeApp) next(t *testing.T, kind string, seen *[]map[string]any) map[string]any {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-a.events:
			if !ok {
				t.Fatalf("the app ended while waiting for %q", kind)
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

func startTime(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	st, err := procfs.ParseStat(b)
	if err != nil {
		t.Fatal(err)
	}
	return st.StartTime
}

// ptyFDs lists pid's fds on /dev/ptmx or a /dev/pts slave.
func ptyFDs(t *testing.T, pid int) []int {
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

func fdOpen(pid, fd int) bool {
	_, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd))
	return err == nil
}

func TestReleaseThroughTheInspectorOfARealNodeApp(t *testing.T) {
	a := startNodeApp(t, 3)
	masters, slaves, raw := a.fds()
	// Every PTY fd of the program, as the plan would see them: besides
	// the fds the streams own, each pty.open() left openpty's own slave
	// fd behind (libuv reopens a slave for its tty handle), owned by
	// nothing.
	fds := ptyFDs(t, a.pid)
	if len(fds) != 10 {
		t.Fatalf("the app holds PTY fds %v, want 3 masters, 6 slaves and a raw master", fds)
	}
	owned := map[int]bool{}
	for _, fd := range append(append([]int{}, masters...), slaves...) {
		owned[fd] = true
	}
	if node, err := IsNode(a.pid); err != nil || !node {
		t.Fatalf("IsNode(%d) = %v, %v", a.pid, node, err)
	}
	before := testproc.PTYCount(t)
	hits := a.get(t)

	rep, err := Release(context.Background(), Target{PID: a.pid, StartTime: startTime(t, a.pid), FDs: fds}, nil)
	if err != nil {
		t.Fatalf("release: %v (%+v)", err, rep)
	}
	if rep.StillOpen || rep.Open <= 0 {
		t.Fatalf("inspector: still open %v, open for %s", rep.StillOpen, rep.Open)
	}
	how := map[int]string{}
	for _, o := range rep.Outcomes {
		if !o.Verified {
			t.Errorf("fd %d: %+v not verified", o.FD, o)
		}
		how[o.FD] = o.How
	}
	for _, fd := range fds {
		switch {
		case owned[fd] && how[fd] != "destroyed":
			t.Errorf("fd %d (owned by a tty.ReadStream): %q, want destroyed", fd, how[fd])
		case !owned[fd] && how[fd] != "closed":
			t.Errorf("fd %d (owned by nothing): %q, want closed", fd, how[fd])
		}
	}
	if !owned[raw] && how[raw] != "closed" {
		t.Errorf("the raw master %d: %q, want closed", raw, how[raw])
	}
	// The kernel's view: every fd gone, the PTYs free.
	for _, fd := range fds {
		if fdOpen(a.pid, fd) {
			t.Errorf("fd %d is still open in pid %d", fd, a.pid)
		}
	}
	// The kernel frees a PTY from a work queue after the last close.
	after := testproc.PTYCount(t)
	for deadline := time.Now().Add(5 * time.Second); after > before-4 && time.Now().Before(deadline); after = testproc.PTYCount(t) {
		time.Sleep(10 * time.Millisecond)
	}
	if after > before-4 {
		t.Errorf("PTYs in use %d -> %d, want 4 fewer", before, after)
	}
	// The port is closed again, and the program ran its own close handlers.
	if inspectorOpen(a.pid) {
		t.Error("the inspector still listens")
	}
	var seen []map[string]any
	closes := 0
	for closes < 6 {
		ev := a.next(t, "close", &seen)
		_ = ev
		closes++
	}
	// Still the same program, still working: it serves and spawns PTYs.
	if n := a.get(t); n != hits+1 {
		t.Errorf("counter %d after release, want %d", n, hits+1)
	}
	io.WriteString(a.stdin, "spawn\n")
	a.next(t, "spawned", &seen)
	for _, ev := range seen {
		if ev["event"] == "exception" || ev["event"] == "exit" {
			t.Errorf("the app reported %v", ev)
		}
	}
}

// catchUSR1 catches SIGUSR1 like Node but is not Node; it reports how many
// it received on each stdin line.
const catchUSR1 = `
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
static volatile sig_atomic_t got;
static void on(int s) { (void)s; got++; }
int main(void) {
	signal(SIGUSR1, on);
	printf("ready\n"); fflush(stdout);
	char line[64];
	while (fgets(line, sizeof line, stdin)) { printf("%d\n", (int)got); fflush(stdout); }
	return 0;
}
`

func TestNeverSignalsAProcessThatIsNotNode(t *testing.T) {
	for name, src := range map[string]string{"catches": catchUSR1, "default": testproc.LeakMasters} {
		t.Run(name, func(t *testing.T) {
			p := testproc.Start(t, testproc.BuildC(t, "notnode", src))
			_, err := Release(context.Background(), Target{PID: p.PID, StartTime: startTime(t, p.PID), FDs: []int{0}}, nil)
			if err == nil || !strings.Contains(err.Error(), "not signalled") {
				t.Fatalf("release: %v, want a refusal", err)
			}
			if !testproc.Alive(p.PID) {
				t.Fatal("the process died")
			}
			if name == "catches" {
				io.WriteString(p.Stdin, "n\n")
				if got := <-p.Lines; got != "0" {
					t.Fatalf("it received %s SIGUSR1", got)
				}
			}
		})
	}
}

func TestRefusesWhenAnotherProcessHoldsThePort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(DefaultPort))
	if err != nil {
		t.Fatalf("cannot take port %d for the test: %v", DefaultPort, err)
	}
	defer l.Close()
	a := startNodeApp(t, 1)
	masters, _, _ := a.fds()
	_, err = Release(context.Background(), Target{PID: a.pid, StartTime: startTime(t, a.pid), FDs: masters}, nil)
	if err == nil || !strings.Contains(err.Error(), "taken by another process") {
		t.Fatalf("release: %v, want a refusal", err)
	}
	if !fdOpen(a.pid, masters[0]) {
		t.Fatal("the fd was touched")
	}
	// Not signalled: Node would have tried to open its inspector and
	// printed an error; it still has no listener of its own.
	if inspectorOpen(a.pid) {
		t.Fatal("the app opened an inspector")
	}
}

func TestRefusesAReusedPID(t *testing.T) {
	a := startNodeApp(t, 1)
	masters, _, _ := a.fds()
	_, err := Release(context.Background(), Target{PID: a.pid, StartTime: startTime(t, a.pid) + 1, FDs: masters}, nil)
	if err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("release: %v", err)
	}
	if inspectorOpen(a.pid) || !fdOpen(a.pid, masters[0]) {
		t.Fatal("signalled or touched")
	}
	_ = syscall.Getpid
}

// inspectorOpen reports whether pid listens on the inspector's port.
func inspectorOpen(pid int) bool {
	own, _ := listenerOf(pid, DefaultPort)
	return own
}
