package inspector

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

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

func fdOpen(pid, fd int) bool {
	_, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(fd))
	return err == nil
}

// fileIDs is what fstat says about each fd of pid, read from outside
// (stat follows /proc/PID/fd/N to the open file).
func fileIDs(t *testing.T, pid int, fds []int) map[int]FileID {
	t.Helper()
	out := map[int]FileID{}
	for _, fd := range fds {
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/"+strconv.Itoa(pid)+"/fd/"+strconv.Itoa(fd), &st); err != nil {
			t.Fatal(err)
		}
		out[fd] = FileID{Dev: uint32(st.Dev), Ino: st.Ino, Rdev: uint32(st.Rdev)}
	}
	return out
}

// inspectorOpen reports whether pid listens on the inspector's port.
func inspectorOpen(pid int) bool {
	own, _ := listenerOf(pid, DefaultPort)
	return own
}

// signalledMessages are what Node prints on stderr when SIGUSR1 reaches
// it: the inspector opened, or failed to.
var signalledMessages = []string{"Debugger listening", "Starting inspector"}

func TestReleaseThroughTheInspectorOfARealNodeApp(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "."), 3)
	masters, slaves, raw := a.FDs()
	// Every PTY fd of the program, as the plan would see them: besides
	// the fds the streams own, each pty.open() left openpty's own slave
	// fd behind (libuv reopens a slave for its tty handle), owned by
	// nothing.
	fds := testproc.PTYFDs(t, a.PID)
	if len(fds) != 10 {
		t.Fatalf("the app holds PTY fds %v, want 3 masters, 6 slaves and a raw master", fds)
	}
	owned := map[int]bool{}
	for _, fd := range append(append([]int{}, masters...), slaves...) {
		owned[fd] = true
	}
	if node, err := IsNode(a.PID); err != nil || !node {
		t.Fatalf("IsNode(%d) = %v, %v", a.PID, node, err)
	}
	before := testproc.PTYCount(t)
	hits := a.Get(t)

	rep, err := Release(context.Background(), Target{PID: a.PID, StartTime: startTime(t, a.PID), FDs: fds, Expect: fileIDs(t, a.PID, fds)}, nil)
	if err != nil {
		t.Fatalf("release: %v (%+v)", err, rep)
	}
	if rep.StillOpen || rep.Open <= 0 {
		t.Fatalf("inspector: still open %v, open for %s", rep.StillOpen, rep.Open)
	}
	t.Logf("the inspector was open for %s", rep.Open) // the window SECURITY.md quotes
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
	if how[raw] != "closed" {
		t.Errorf("the raw master %d: %q, want closed", raw, how[raw])
	}
	// The kernel's view: every fd gone, the PTYs free.
	for _, fd := range fds {
		if fdOpen(a.PID, fd) {
			t.Errorf("fd %d is still open in pid %d", fd, a.PID)
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
	if inspectorOpen(a.PID) {
		t.Error("the inspector still listens")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9229", time.Second); err == nil {
		c.Close()
		t.Error("127.0.0.1:9229 still takes connections")
	}
	var seen []map[string]any
	for i := 0; i < 6; i++ {
		a.Next(t, "close", &seen)
	}
	// Still the same program, still working: it serves and spawns PTYs.
	a.StillWorks(t, hits, &seen)
}

// The program's own fstat decides right before it acts: an fd whose
// number now names another file is left alone, the others go.
func TestInspectorLeavesAnFDThatIsAnotherFileNow(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "."), 1)
	masters, _, raw := a.FDs()
	fds := []int{masters[0], raw}
	expect := fileIDs(t, a.PID, fds)
	e := expect[raw]
	e.Ino++ // what the plan saw was another file
	expect[raw] = e
	rep, err := Release(context.Background(), Target{PID: a.PID, StartTime: startTime(t, a.PID), FDs: fds, Expect: expect}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]FDResult{}
	for _, o := range rep.Outcomes {
		got[o.FD] = o
	}
	if o := got[raw]; o.How != "failed" || !strings.Contains(o.Error, "is another file now") || !fdOpen(a.PID, raw) {
		t.Errorf("the changed fd: %+v, open %v", o, fdOpen(a.PID, raw))
	}
	if o := got[masters[0]]; o.How != "destroyed" || !o.Verified {
		t.Errorf("the planned fd: %+v", o)
	}
	if inspectorOpen(a.PID) {
		t.Error("the inspector still listens")
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

func sigCgtOf(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	m, err := sigCgt(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestNeverSignalsAProcessThatIsNotNode(t *testing.T) {
	for name, src := range map[string]string{"catches": catchUSR1, "default": testproc.LeakMasters} {
		t.Run(name, func(t *testing.T) {
			p := testproc.Start(t, testproc.BuildC(t, "notnode", src))
			catches := CatchesSIGUSR1(sigCgtOf(t, p.PID))
			if catches != (name == "catches") {
				t.Fatalf("SigCgt says catches SIGUSR1: %v", catches)
			}
			want := "is not Node.js or Electron"
			if !catches {
				want = "does not catch SIGUSR1"
			}
			ok, why := NewProber().Check(p.PID, startTime(t, p.PID))
			if ok || !strings.Contains(why, want) {
				t.Fatalf("Check: %v %q, want a refusal %q", ok, why, want)
			}
			_, err := Release(context.Background(), Target{PID: p.PID, StartTime: startTime(t, p.PID), FDs: []int{0}}, nil)
			if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "not signalled") {
				t.Fatalf("release: %v, want a refusal %q", err, want)
			}
			// The default action of SIGUSR1 ends a process: it is alive,
			// and its mask still shows no handler.
			if !testproc.Alive(p.PID) || CatchesSIGUSR1(sigCgtOf(t, p.PID)) != catches {
				t.Fatal("the process died or changed")
			}
			if catches {
				io.WriteString(p.Stdin, "n\n")
				if got := <-p.Lines; got != "0" {
					t.Fatalf("it received %s SIGUSR1", got)
				}
			}
		})
	}
}

func TestProberSaysWhyOnANodeApp(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "."), 1)
	ok, why := NewProber().Check(a.PID, startTime(t, a.PID))
	if !ok || why != "Node.js or Electron, catches SIGUSR1, no Electron fuse wire in the binary, port 9229 free" {
		t.Fatalf("Check: %v %q", ok, why)
	}
	if ok, why := NewProber().Check(a.PID, startTime(t, a.PID)+1); ok || !strings.Contains(why, "another process now") {
		t.Fatalf("reused pid: %v %q", ok, why)
	}
	for _, m := range signalledMessages {
		if strings.Contains(a.Stderr(), m) {
			t.Fatalf("Check signalled the app: %q", a.Stderr())
		}
	}
}

// listenerScript listens on argv[1]:argv[2] (port 0: any), says the port,
// and accepts and keeps every connection: a process that is not the
// target holding a listener or the server ends of connections.
const listenerScript = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(16)
print("ready", flush=True)
print(s.getsockname()[1], flush=True)
kept = []
while True:
    kept.append(s.accept())
`

// startListener runs listenerScript in its own process and returns it and
// its port.
func startListener(t *testing.T, host string, port int) (*testproc.Proc, int) {
	t.Helper()
	p := testproc.Start(t, "python3", "-c", listenerScript, host, strconv.Itoa(port))
	got, err := strconv.Atoi(<-p.Lines)
	if err != nil {
		t.Fatal(err)
	}
	return p, got
}

// provenDial talks only over a connection whose server end the target
// holds: one accepted by another process is refused, and the same
// connection is proven when the host is that process.
func TestProvenDialChecksWhoAcceptedTheConnection(t *testing.T) {
	l, port := startListener(t, "127.0.0.1", 0)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(5 * time.Second)
	// The test process holds the client end only.
	other := &linuxHost{t: Target{PID: os.Getpid()}}
	if c, err := provenDial(context.Background(), other, addr, port, deadline); err == nil || !strings.Contains(err.Error(), "accepted by another process") {
		t.Fatalf("dial proven for a process that did not accept it: %v %v", c, err)
	}
	owner := &linuxHost{t: Target{PID: l.PID}}
	c, err := provenDial(context.Background(), owner, addr, port, deadline)
	if err != nil {
		t.Fatalf("the listener's own connection: %v", err)
	}
	c.Close()
}

func TestRefusesWhenAnotherProcessHoldsThePort(t *testing.T) {
	for _, host := range []string{"127.0.0.1", "0.0.0.0"} {
		t.Run(host, func(t *testing.T) { refusesWhenHeldBy(t, host) })
	}
}

func refusesWhenHeldBy(t *testing.T, host string) {
	startListener(t, host, DefaultPort)
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "."), 1)
	masters, _, _ := a.FDs()
	if ok, why := NewProber().Check(a.PID, startTime(t, a.PID)); ok || why != "port 9229 is taken by another process" {
		t.Fatalf("Check: %v %q", ok, why)
	}
	_, err := Release(context.Background(), Target{PID: a.PID, StartTime: startTime(t, a.PID), FDs: masters}, nil)
	if err == nil || !strings.Contains(err.Error(), "taken by another process") {
		t.Fatalf("release: %v, want a refusal", err)
	}
	if !fdOpen(a.PID, masters[0]) {
		t.Fatal("the fd was touched")
	}
	// Not signalled: Node would have tried to open its inspector and
	// said so on stderr.
	time.Sleep(200 * time.Millisecond)
	for _, m := range signalledMessages {
		if strings.Contains(a.Stderr(), m) {
			t.Fatalf("the app was signalled: %q", a.Stderr())
		}
	}
	a.Get(t)
}

func TestRefusesAReusedPID(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "."), 1)
	masters, _, _ := a.FDs()
	_, err := Release(context.Background(), Target{PID: a.PID, StartTime: startTime(t, a.PID) + 1, FDs: masters}, nil)
	if err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("release: %v", err)
	}
	if inspectorOpen(a.PID) || !fdOpen(a.PID, masters[0]) || strings.Contains(a.Stderr(), "Debugger") {
		t.Fatal("signalled or touched")
	}
}

// A watched fd no net.Socket owns has a watcher the evaluation cannot
// see: it is left open. When a net.Socket owns another fd of the same open
// file, that socket is the watcher and the bare number may go.
func TestInspectorLeavesAWatchedFDNoSocketOwns(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "."), 1)
	masters, _, raw := a.FDs()
	fds := []int{raw}
	rep, err := Release(context.Background(), Target{PID: a.PID, StartTime: startTime(t, a.PID), FDs: fds, Expect: fileIDs(t, a.PID, fds),
		Watched: map[int][]int{raw: {}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outcomes) != 1 || rep.Outcomes[0].How != "failed" || !strings.Contains(rep.Outcomes[0].Error, "no net.Socket owns it") || !fdOpen(a.PID, raw) {
		t.Fatalf("%+v, open %v", rep.Outcomes, fdOpen(a.PID, raw))
	}
	if inspectorOpen(a.PID) {
		t.Fatal("the inspector still listens")
	}
	rep, err = Release(context.Background(), Target{PID: a.PID, StartTime: startTime(t, a.PID), FDs: fds, Expect: fileIDs(t, a.PID, fds),
		Watched: map[int][]int{raw: {masters[0]}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Outcomes) != 1 || rep.Outcomes[0].How != "closed" || !rep.Outcomes[0].Verified || fdOpen(a.PID, raw) {
		t.Fatalf("%+v, open %v", rep.Outcomes, fdOpen(a.PID, raw))
	}
	if !fdOpen(a.PID, masters[0]) {
		t.Fatal("the socket's own fd was touched")
	}
	var seen []map[string]any
	a.StillWorks(t, a.Get(t), &seen)
}

// If ptyreclaim vanishes mid-exchange, the target still closes its
// inspector at the deadline: the dead-man timer armed first does it.
func TestDeadmanClosesTheInspectorWhenWeVanish(t *testing.T) {
	a := testproc.StartNodeApp(t, testproc.NodeAppDir(t, "."), 1)
	pidfd, err := unix.PidfdOpen(a.PID, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := &linuxHost{t: Target{PID: a.PID, StartTime: startTime(t, a.PID)}, pidfd: pidfd}
	defer h.close()
	if err := h.recheck(); err != nil {
		t.Fatal(err)
	}
	if err := h.sigusr1(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitListener(ctx, h, a.PID, DefaultPort, true); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(DefaultPort)
	deadline := time.Now().Add(20 * time.Second)
	dial := func(ctx context.Context) (net.Conn, error) { return provenDial(ctx, h, addr, DefaultPort, deadline) }
	targets, err := listTargets(ctx, addr, dial, deadline)
	if err != nil || len(targets) != 1 {
		t.Fatalf("targets %v: %v", targets, err)
	}
	s, err := dialSession(ctx, dial, targets[0].WebSocketDebuggerURL, deadline)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.armDeadman(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	s.ws.c.Close() // gone without a word
	if err := waitListener(ctx, h, a.PID, DefaultPort, false); err != nil {
		t.Fatal(err)
	}
	var seen []map[string]any
	a.StillWorks(t, a.Get(t), &seen)
}

// A program started with inspector options is never signalled: SIGUSR1
// could open its inspector where the route does not look.
func TestNeverSignalsANodeWithInspectorOptions(t *testing.T) {
	p := testproc.Start(t, "node", "--inspect-port=0", "-e", `console.log("ready"); setInterval(() => {}, 1000)`)
	_, err := Release(context.Background(), Target{PID: p.PID, StartTime: startTime(t, p.PID), FDs: []int{0}}, nil)
	if err == nil || !strings.Contains(err.Error(), `was started with "--inspect-port=0"`) || !strings.Contains(err.Error(), "not signalled") {
		t.Fatalf("release: %v", err)
	}
	if ports := (&linuxHost{t: Target{PID: p.PID}}).ports(); len(ports) != 0 {
		t.Fatalf("it listens on %v: it was signalled", ports)
	}
}

// A program that moved its inspector at run time (process.debugPort)
// opens it elsewhere on SIGUSR1: the route says so instead of reporting
// a clean refusal.
func TestSaysWhenTheInspectorOpenedOnAnotherPort(t *testing.T) {
	p := testproc.Start(t, "node", "-e", `process.debugPort = 0; console.log("ready"); setInterval(() => {}, 1000)`)
	rep, err := Release(context.Background(), Target{PID: p.PID, StartTime: startTime(t, p.PID), FDs: []int{0}}, nil)
	if err == nil || !strings.Contains(err.Error(), "opened no inspector") {
		t.Fatalf("release: %v", err)
	}
	if !rep.StillOpen || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "opened a new listener on port") {
		t.Fatalf("report %+v", rep)
	}
}
