// Package runtimes checks ptyreclaim against real event-loop programs (issue
// 9): Node with node-pty, Go with creack/pty, Python asyncio, C with libuv
// and GLib. Each target leaks PTYs the way real apps do, keeps serving HTTP
// on 127.0.0.1, and after a release exercises the paths that break (pause
// and resume, read stop and start, destroy, GC, new spawns, a chosen exit
// code). The tests run the real ptyreclaim binary with a policy file and
// judge from outside (/proc, the kernel's PTY count, the exit status) and
// from the events the program writes itself (JSON lines).
package runtimes

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// ptyreclaim is the binary built once for this test binary.
var ptyreclaim string

func TestMain(m *testing.M) {
	// PTYRECLAIM_BIN measures a binary built before (another build of
	// the injector, say) instead of this tree's.
	if bin := os.Getenv("PTYRECLAIM_BIN"); bin != "" {
		ptyreclaim = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "runtimes-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ptyreclaim = filepath.Join(dir, "ptyreclaim")
	if out, err := exec.Command("go", "build", "-o", ptyreclaim, "../../cmd/ptyreclaim").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build ptyreclaim: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// A policy variant the release runs under. Watched says whether it releases
// fds the program's event loop still watches; Method and WatchedMethod are
// what the unwatched and the watched fds get ("" for the policy's
// default), so that each variant changes one kind of fd only, or gives
// both kinds the same replacement.
type variant struct {
	Name          string
	YAML          string
	Watched       bool
	Method        string
	WatchedMethod string
}

// variants are the default policy, each method on the unwatched fds alone
// (watched ones skipped), and each pollable method on both kinds. devnull
// and close are never given to a watched fd: ptyreclaim refuses that (the
// inject package measures the harm it would do, in loops_linux_test.go).
var variants = []variant{
	{Name: "default", YAML: "version: 1\n"},
	{Name: "unwatched-devnull", YAML: "version: 1\ndefaults:\n  method: devnull\n  watched: skip\n", Method: "devnull"},
	{Name: "unwatched-close", YAML: "version: 1\ndefaults:\n  method: close\n  watched: skip\n", Method: "close"},
	{Name: "unwatched-hangup", YAML: "version: 1\ndefaults:\n  method: hangup\n  watched: skip\n", Method: "hangup"},
	{Name: "unwatched-quiet", YAML: "version: 1\ndefaults:\n  method: quiet\n  watched: skip\n", Method: "quiet"},
	{Name: "all-hangup", YAML: "version: 1\ndefaults:\n  method: hangup\n  watched: reclaim\n  watched_method: hangup\n", Watched: true, Method: "hangup", WatchedMethod: "hangup"},
	{Name: "all-quiet", YAML: "version: 1\ndefaults:\n  method: quiet\n  watched: reclaim\n  watched_method: quiet\n", Watched: true, Method: "quiet", WatchedMethod: "quiet"},
}

// writePolicy writes the policy root-owned 0644 in a root-owned 0755 dir
// under /run, as ptyreclaim demands of a policy file (every directory up
// to / only root can write: /tmp is refused).
func writePolicy(t testing.TB, yaml string) string {
	t.Helper()
	dir := testproc.PolicyDir(t)
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 0, 0); err != nil {
		t.Fatal(err)
	}
	return path
}

// action is one action of the release report, decoded loosely so that new
// fields (the program's own close) show up without a new type.
type action map[string]any

func (a action) str(k string) string { s, _ := a[k].(string); return s }
func (a action) fd() int {
	f, ok := a["fd"].(float64)
	if !ok {
		return -1
	}
	return int(f)
}

type releaseResult struct {
	Code    int
	Stderr  string
	Actions []action
	// Start and End bracket the release command (wall clock, for the
	// benchmark's "release to the program's own close").
	Start, End time.Time
}

// release runs the real binary: ptyreclaim release --pid P... --yes
// --min-idle 0s --policy FILE --json.
func release(t testing.TB, policy string, pids ...int) releaseResult {
	t.Helper()
	args := []string{"release", "--yes", "--min-idle", "0s", "--policy", policy, "--json"}
	for _, p := range pids {
		args = append(args, "--pid", strconv.Itoa(p))
	}
	cmd := exec.Command(ptyreclaim, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := releaseResult{Start: time.Now()}
	err := cmd.Run()
	r.End = time.Now()
	r.Stderr = stderr.String()
	if ee, ok := err.(*exec.ExitError); ok {
		r.Code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("ptyreclaim: %v", err)
	}
	if s := strings.TrimSpace(stdout.String()); s != "" {
		var rep struct {
			Actions []action `json:"actions"`
		}
		if err := json.Unmarshal([]byte(s), &rep); err != nil {
			t.Fatalf("release JSON: %v\n%s", err, s)
		}
		r.Actions = rep.Actions
	}
	return r
}

// done returns the actions on pid that were carried out.
func (r releaseResult) done(pid int) []action {
	var out []action
	for _, a := range r.Actions {
		if p, _ := a["pid"].(float64); int(p) == pid && a.str("result") == "done" {
			out = append(out, a)
		}
	}
	return out
}

func (r releaseResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "exit %d %s", r.Code, strings.TrimSpace(r.Stderr))
	for _, a := range r.Actions {
		fmt.Fprintf(&b, "\n  pid %v fd %v %s %s: %s", a["pid"], a["fd"], a.str("method"), a.str("result"), a.str("reason"))
	}
	return b.String()
}

// event is one JSON line a target wrote about itself.
type event map[string]any

func (e event) str(k string) string { s, _ := e[k].(string); return s }
func (e event) num(k string) float64 {
	f, _ := e[k].(float64)
	return f
}

// events reads the target's event file.
func readEvents(t testing.TB, path string) []event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []event
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Errorf("event line %q: %v", sc.Text(), err)
			continue
		}
		out = append(out, e)
	}
	return out
}

func count(evs []event, kind string) int {
	n := 0
	for _, e := range evs {
		if e.str("ev") == kind {
			n++
		}
	}
	return n
}

// closedFDs maps each fd the program's own close handlers reported to the
// time it did (unix nanoseconds).
func closedFDs(evs []event) map[int]float64 {
	out := map[int]float64{}
	for _, e := range evs {
		if e.str("ev") == "close" {
			if _, seen := out[int(e.num("fd"))]; !seen {
				out[int(e.num("fd"))] = e.num("t")
			}
		}
	}
	return out
}

// cpuTicks is utime+stime of pid in clock ticks (/proc/PID/stat fields 14, 15).
func cpuTicks(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatalf("cpu of %d: %v", pid, err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.Atoi(f[11])
	k, _ := strconv.Atoi(f[12])
	return u + k
}

// window is the fixed span over which CPU use is compared before and after
// a release. It bounds no result: it only sets how much CPU a spinning loop
// can show.
const window = 2 * time.Second

// ticksPerSecond is USER_HZ, 100 on every Linux port Go supports.
const ticksPerSecond = 100

// cpuOver returns the CPU ticks pid used over one window.
func cpuOver(t testing.TB, pid int) int {
	t.Helper()
	a := cpuTicks(t, pid)
	time.Sleep(window)
	return cpuTicks(t, pid) - a
}

// spinning reports a loop that used more than 30 % of a CPU over a window:
// an idle loop uses a tick or two, a spinning one most of a core even on a
// loaded two-core machine.
func spinning(ticks int) bool {
	return ticks*100 > int(window.Seconds()*ticksPerSecond)*30
}

// ptyIndexes maps each PTY fd of pid (masters by tty-index, slaves by
// /dev/pts/N) to its PTY number; a process that vanished has none.
func ptyIndexes(pid int) map[int]int {
	out := map[int]int{}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return out
	}
	for _, e := range ents {
		fd, _ := strconv.Atoi(e.Name())
		l, err := testproc.FDLink(pid, fd)
		if err != nil {
			continue
		}
		if n, ok := strings.CutPrefix(l, "/dev/pts/"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				out[fd] = i
			}
		} else if l == "/dev/ptmx" {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "tty-index:"); ok {
					if i, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
						out[fd] = i
					}
				}
			}
		}
	}
	return out
}

// holders maps each PTY number to the fds that hold it, over every process
// on the machine ("pid/fd").
func holders() map[int][]string {
	out := map[int][]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		for fd, n := range ptyIndexes(pid) {
			out[n] = append(out[n], fmt.Sprintf("%d/%d", pid, fd))
		}
	}
	return out
}

// freedBy returns the PTY numbers a release must have freed: those whose
// every holder on the machine was an fd the release reports done.
func freedBy(before map[int][]string, r releaseResult) []int {
	doneFD := map[string]bool{}
	for _, a := range r.Actions {
		if a.str("result") == "done" && a.fd() >= 0 {
			p, _ := a["pid"].(float64)
			doneFD[fmt.Sprintf("%d/%d", int(p), a.fd())] = true
		}
	}
	var out []int
	for n, hs := range before {
		all := len(hs) > 0
		for _, h := range hs {
			all = all && doneFD[h]
		}
		if all {
			out = append(out, n)
		}
	}
	sort.Ints(out)
	return out
}

// ptsExists says whether the kernel still has PTY n (devpts lists exactly
// the allocated ones). It waits up to 2 s for the node to go: the last
// close may be the program's own, a moment after the release returned.
func ptsExists(n int) bool {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Lstat(fmt.Sprintf("/dev/pts/%d", n)); err != nil {
			return false
		}
		if time.Now().After(deadline) {
			return true
		}
	}
}

// get fetches http://127.0.0.1:port/path with a fresh connection and
// returns the body.
func get(t testing.TB, port int, path string) (string, error) {
	t.Helper()
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("%s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	return string(b), err
}

// counts checks the loop still serves HTTP: two counter requests in a row
// answer n and n+1.
func counts(t testing.TB, port int) error {
	t.Helper()
	a, err := get(t, port, "/count")
	if err != nil {
		return err
	}
	b, err := get(t, port, "/count")
	if err != nil {
		return err
	}
	x, _ := strconv.Atoi(strings.TrimSpace(a))
	y, _ := strconv.Atoi(strings.TrimSpace(b))
	if y != x+1 {
		return fmt.Errorf("counter answered %q then %q", a, b)
	}
	return nil
}

// children lists the pids whose parent is pid.
func children(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// exitStatus waits for the started process and returns its exit code, or
// 128+signal when a signal ended it (as a shell reports it).
func exitStatus(t testing.TB, p *testproc.Proc) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.Cmd.Wait() }()
	select {
	case err := <-done:
		if err == nil {
			return 0
		}
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("wait: %v", err)
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	case <-time.After(60 * time.Second):
		t.Fatalf("pid %d did not exit after it was asked to", p.PID)
		return -1
	}
}
