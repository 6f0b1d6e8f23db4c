//go:build linux

package inject

import (
	"context"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

func TestReclaimSingleThreadDevNull(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "100")
	fds := tg.readyFDs()
	indexes := make([]int, len(fds))
	for i, fd := range fds {
		indexes[i] = tg.ptyIndex(fd)
	}
	tg.echo("before")
	before := testproc.PTYCount(t)

	rep := reclaim(t, tg, fds, MethodDevNull)

	after := testproc.PTYCount(t)
	t.Logf("threads=%d frozen=%v pty/nr %d -> %d notes=%v crash-safe=%v %s", rep.Threads, rep.Frozen, before, after, rep.Notes, rep.CrashSafe, rep.CrashSafeReason)
	if rep.Done() != 100 {
		t.Fatalf("done %d of 100: %+v", rep.Done(), rep.FDs)
	}
	for _, r := range rep.FDs {
		if r.Method != MethodDevNull || r.Reason != "" {
			t.Errorf("fd %d: %+v", r.FD, r)
		}
	}
	// Other packages' tests may open or close PTYs meanwhile; the exact
	// proof is that every one of these PTY nodes is gone.
	if drop := before - after; drop < 95 {
		t.Errorf("pty/nr dropped by %d, want 100", drop)
	}
	for i, fd := range fds {
		if ptsExists(indexes[i]) {
			t.Errorf("PTY %d (fd %d) is still allocated", indexes[i], fd)
		}
		if link := tg.fdLink(fd); link != "/dev/null" {
			t.Errorf("fd %d reads back as %q, want /dev/null", fd, link)
		}
		wantCloexec := i%2 == 1
		if got := tg.fdFlags(fd)&oCLOEXEC != 0; got != wantCloexec {
			t.Errorf("fd %d: close-on-exec %v, want %v", fd, got, wantCloexec)
		}
	}
	tg.echo("after")
	if _, eintrs := tg.count(); eintrs != 0 || len(tg.eintrLines()) != 0 {
		t.Errorf("target saw EINTR: %d %v", eintrs, tg.eintrLines())
	}
	if s := threadsStopped(tg.pid); len(s) > 0 || tracerOf(tg.pid) != 0 {
		t.Errorf("left stopped %v or traced by %d", s, tracerOf(tg.pid))
	}
}

func TestReclaimClose(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "20")
	fds := tg.readyFDs()
	rep := reclaim(t, tg, fds, MethodClose)
	if rep.Done() != len(fds) {
		t.Fatalf("done %d of %d: %+v", rep.Done(), len(fds), rep.FDs)
	}
	for _, fd := range fds {
		if link := tg.fdLink(fd); link != "closed" {
			t.Errorf("fd %d still open as %q", fd, link)
		}
	}
	tg.echo("after-close")
}

func TestReclaimMultiThreaded(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "60", "-S", "2", "-L", "2", "-W")
	fds := tg.readyFDs()
	for i := 0; i < len(fds); i += 10 {
		rep := reclaim(t, tg, fds[i:i+10], MethodDevNull)
		if rep.Done() != 10 || rep.Threads != 6 {
			t.Fatalf("round %d: done %d, threads %d: %+v", i/10, rep.Done(), rep.Threads, rep)
		}
		t.Logf("round %d: frozen %v", i/10, rep.Frozen)
		tg.echo(fmt.Sprint("round", i))
		time.Sleep(20 * time.Millisecond) // let the stream run between freezes
	}
	for _, fd := range fds {
		if link := tg.fdLink(fd); link != "/dev/null" {
			t.Errorf("fd %d reads back as %q", fd, link)
		}
	}
	tg.send("EXIT")
	tg.expect("BYE")
	if err := tg.cmd.Wait(); err != nil {
		t.Errorf("target ended with %v (stderr %s)", err, tg.stderrText())
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.lastSeq < 10 || len(tg.seqErrors) > 0 {
		t.Errorf("stream: last %d, errors %v", tg.lastSeq, tg.seqErrors)
	}
	if len(tg.eintr) > 0 {
		t.Errorf("target saw EINTR: %v", tg.eintr)
	}
	t.Logf("streamed %d lines", tg.lastSeq)
}

func TestReclaimGoTarget(t *testing.T) {
	tg := startTarget(t, program(t, "gotarget"))
	fds := tg.readyFDs()
	before, _ := tg.count()
	for i := 0; i < 4; i++ {
		part := fds[i*5 : i*5+5]
		// The os.File masters sit in Go's netpoller: only a pollable
		// replacement may take their place.
		rep := reclaim(t, tg, part, MethodHangup)
		if rep.Done() != 5 {
			t.Fatalf("done %d of 5: %+v", rep.Done(), rep)
		}
		t.Logf("round %d: threads %d frozen %v notes %v", i, rep.Threads, rep.Frozen, rep.Notes)
		tg.echo(fmt.Sprint("go", i))
		time.Sleep(10 * time.Millisecond)
	}
	for _, fd := range fds {
		if link := tg.fdLink(fd); !strings.HasPrefix(link, "socket:") {
			t.Errorf("fd %d reads back as %q", fd, link)
		}
	}
	after, _ := tg.count() // runs a GC in the target too
	if after <= before {
		t.Errorf("the target's ticker stopped: %d -> %d", before, after)
	}
	tg.send("EXIT")
	tg.expect("BYE")
	if err := tg.cmd.Wait(); err != nil {
		t.Errorf("Go target ended with %v (stderr %s)", err, tg.stderrText())
	}
	if e := tg.eintrLines(); len(e) > 0 {
		t.Errorf("Go target saw %v", e)
	}
}

// A thread stopped inside a sleep holds ERESTART_RESTARTBLOCK. Resuming it
// from the interrupt stop, an arm64 kernel turns a syscall at the very svc
// it rewound the thread to into restart_syscall: a call injected there
// would run the sleep's restart instead (an "mmap" that sleeps, or fails
// with the futex's ETIMEDOUT in a Go runtime thread). Each injected call
// must be itself, and the sleep must go on afterwards without an EINTR.
func TestReclaimThreadInsideNanosleep(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "12", "-N")
	fds := tg.readyFDs()
	// The leader, which the injector works through first, must be in its
	// sleep (or the sleep's restart, after a release), not on its way to it.
	asleep := func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/syscall", tg.pid))
		f := strings.Fields(string(b))
		if err != nil || len(f) == 0 {
			return false
		}
		for _, nr := range []int{unix.SYS_CLOCK_NANOSLEEP, unix.SYS_NANOSLEEP, unix.SYS_RESTART_SYSCALL} {
			if f[0] == strconv.Itoa(nr) {
				return true
			}
		}
		return false
	}
	for i := 0; i < 3; i++ {
		for deadline := time.Now().Add(10 * time.Second); !asleep(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the leader is not in nanosleep", i)
			}
		}
		rep := reclaim(t, tg, fds[i*4:i*4+4], MethodDevNull)
		if rep.Done() != 4 {
			t.Fatalf("round %d: done %d of 4: %+v", i, rep.Done(), rep)
		}
		t.Logf("round %d: threads %d frozen %v", i, rep.Threads, rep.Frozen)
		tg.echo(fmt.Sprint("nap", i))
	}
	for _, fd := range fds {
		if link := tg.fdLink(fd); link != "/dev/null" {
			t.Errorf("fd %d reads back as %q", fd, link)
		}
	}
	if !asleep() {
		t.Error("the leader left its sleep")
	}
	if e := tg.eintrLines(); len(e) > 0 {
		t.Errorf("target saw %v", e)
	}
}

func TestReclaimPythonTarget(t *testing.T) {
	tg := startTarget(t, "python3", "testdata/target.py")
	fds := tg.readyFDs() // 20 masters, then a master and its slave
	before := testproc.PTYCount(t)
	rep := reclaim(t, tg, fds, MethodDevNull)
	if rep.Done() != len(fds) {
		t.Fatalf("done %d of %d: %+v", rep.Done(), len(fds), rep)
	}
	t.Logf("python: threads %d frozen %v pty/nr %d -> %d", rep.Threads, rep.Frozen, before, testproc.PTYCount(t))
	for _, fd := range fds {
		if link := tg.fdLink(fd); link != "/dev/null" {
			t.Errorf("fd %d reads back as %q", fd, link)
		}
	}
	tg.echo("python-after")
	tg.send("EXIT")
	if err := tg.cmd.Wait(); err != nil {
		t.Errorf("python target ended with %v (stderr %s)", err, tg.stderrText())
	}
}

// TestReclaimSignals sends SIGUSR1 in a tight loop, each paced by the
// handler's acknowledgement, while fds are released two at a time: every
// signal sent must be received.
func TestReclaimSignals(t *testing.T) {
	// No sleeping thread: nanosleep fails with EINTR after any handler runs,
	// by POSIX, which would hide an EINTR caused by the release.
	tg := startTarget(t, program(t, "target"), "-m", "80", "-a", "-S", "1")
	fds := tg.readyFDs()
	stop := make(chan struct{})
	sent := make(chan int)
	go func() {
		n := 0
		defer func() { sent <- n }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := syscall.Kill(tg.pid, syscall.SIGUSR1); err != nil {
				return
			}
			n++
			for waited := 0; ; waited++ {
				tg.mu.Lock()
				got := tg.sigs
				tg.mu.Unlock()
				if got >= n {
					break
				}
				if waited > 20000 { // 20 s: the signal is lost
					return
				}
				time.Sleep(time.Millisecond / 4)
			}
		}
	}()
	var frozen time.Duration
	for i := 0; i < len(fds); i += 2 {
		rep := reclaim(t, tg, fds[i:i+2], MethodDevNull)
		if rep.Done() != 2 {
			t.Errorf("round %d: %+v", i, rep)
		}
		frozen += rep.Frozen
	}
	close(stop)
	n := <-sent
	got, eintrs := tg.count()
	t.Logf("signals sent %d, received %d; 40 releases frozen %v in total; EINTR %d", n, got, frozen, eintrs)
	if got != n {
		t.Errorf("sent %d SIGUSR1, target received %d", n, got)
	}
	if eintrs != 0 {
		t.Errorf("target saw EINTR: %v", tg.eintrLines())
	}
	if n < 40 {
		t.Errorf("only %d signals were sent; the test did not overlap the releases", n)
	}
	tg.echo("signals-after")
}

// TestReclaimChurn releases fds of a target that closes and reopens its
// fd numbers constantly, as PTYs or as files: only a PTY fd proven to be
// the copied one may ever be replaced.
func TestReclaimChurn(t *testing.T) {
	tg := startTarget(t, program(t, "churn"), t.TempDir())
	base, _ := strconv.Atoi(tg.ready[0])
	slots, _ := strconv.Atoi(tg.ready[1])
	var all []int
	for i := 0; i < slots; i++ {
		all = append(all, base+i)
	}
	done, skipped, fileSkips := 0, 0, 0
	for attempt := 0; attempt < 1000; attempt++ {
		// Ask for every slot, files included: the injector must sort them out.
		rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: all}, zap.NewNop())
		if err != nil {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
		for _, r := range rep.FDs {
			switch r.Result {
			case ResultDone:
				done++
			case ResultSkipped:
				skipped++
				if strings.Contains(r.Reason, "not a PTY") {
					fileSkips++
				}
			default:
				t.Errorf("attempt %d: %+v", attempt, r)
			}
		}
	}
	tg.send("STATUS")
	f := strings.Fields(tg.expect("STATUS"))
	corrupt, _ := strconv.Atoi(f[1])
	reclaimed, _ := strconv.Atoi(f[2])
	t.Logf("1000 attempts: %d replaced, %d skipped (%d as not a PTY); target: corrupt=%s reclaimed=%s iterations=%s",
		done, skipped, fileSkips, f[1], f[2], f[3])
	if corrupt != 0 {
		t.Errorf("target found %d corrupted slots: %s", corrupt, tg.stderrText())
	}
	if reclaimed == 0 || done == 0 {
		t.Errorf("nothing was ever replaced (done %d, target saw %d)", done, reclaimed)
	}
}

// TestReclaimExitingTargets races releases against targets that exit by
// themselves or are killed: every call must come back with a clear answer.
func TestReclaimExitingTargets(t *testing.T) {
	path := program(t, "target")
	outcomes := map[string]int{}
	for i := 0; i < 30; i++ {
		ms := fmt.Sprint(i % 5)
		tg := startTarget(t, path, "-m", "30", "-S", "1", "-x", ms)
		if i%3 == 0 {
			go func() {
				time.Sleep(time.Duration(i%4) * 100 * time.Microsecond)
				tg.cmd.Process.Kill()
			}()
		}
		rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: tg.readyFDs()}, zap.NewNop())
		switch {
		case err != nil:
			outcomes["error: "+genericError(err.Error(), tg.pid)]++
		default:
			outcomes[fmt.Sprintf("released %d", rep.Done())]++
			if rep.Done() != 30 {
				t.Logf("partial: %+v", rep)
			}
		}
		tg.cmd.Process.Kill()
		tg.cmd.Wait()
	}
	t.Logf("outcomes: %v", outcomes)
	for k := range outcomes {
		if strings.HasPrefix(k, "error: ") && !strings.Contains(k, "exited") && !strings.Contains(k, "no process") &&
			!strings.Contains(k, "zombie") && !strings.Contains(k, "no executable") {
			t.Errorf("unclear outcome %q", k)
		}
	}
}

func genericError(s string, pid int) string {
	return strings.ReplaceAll(s, strconv.Itoa(pid), "PID")
}

func TestReclaimRefusesTracedTarget(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "5")
	tr := startCmdLine(t, program(t, "tracer"), fmt.Sprint(tg.pid))
	tr.expect("TRACING")
	before := tg.fdLink(tg.readyFDs()[0])
	err := Preflight(tg.pid)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("traced by pid %d", tr.pid)) {
		t.Fatalf("Preflight: %v", err)
	}
	_, err = Reclaim(context.Background(), Target{PID: tg.pid, FDs: tg.readyFDs()}, testLogger(t))
	if err == nil {
		t.Fatal("Reclaim of a traced process succeeded")
	}
	t.Logf("refused: %v", err)
	if after := tg.fdLink(tg.readyFDs()[0]); after != before {
		t.Errorf("fd changed: %q -> %q", before, after)
	}
	tr.stdin.Close()
	tr.cmd.Wait()
	tg.echo("untraced")
}

func TestReclaimRefusesStrictSeccomp(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "5", "-s")
	tg.echo("strict") // proves strict mode is on and serving
	err := Preflight(tg.pid)
	if err == nil || !strings.Contains(err.Error(), "strict seccomp") {
		t.Fatalf("Preflight: %v", err)
	}
	if _, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: tg.readyFDs()}, testLogger(t)); err == nil {
		t.Fatal("Reclaim of a strict-seccomp process succeeded")
	}
	for _, fd := range tg.readyFDs() {
		if link := tg.fdLink(fd); link != "/dev/ptmx" {
			t.Errorf("fd %d changed to %q", fd, link)
		}
	}
	tg.echo("still-strict")
}

func TestReclaimAtFDLimit(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "10", "-l")
	fds := tg.readyFDs()
	rep := reclaim(t, tg, fds, MethodDevNull)
	if rep.Done() != len(fds) {
		t.Fatalf("done %d of %d: %+v", rep.Done(), len(fds), rep)
	}
	first := rep.FDs[0]
	if first.Method != MethodClose || !strings.Contains(first.Reason, "fd limit") {
		t.Errorf("first fd: %+v, want a close with the fd limit named", first)
	}
	if tg.fdLink(first.FD) != "closed" {
		t.Errorf("fd %d is %q, want closed", first.FD, tg.fdLink(first.FD))
	}
	for _, r := range rep.FDs {
		t.Logf("fd %d: %s %s %q", r.FD, r.Result, r.Method, r.Reason)
		if r.Method == MethodDevNull && tg.fdLink(r.FD) != "/dev/null" {
			t.Errorf("fd %d is %q", r.FD, tg.fdLink(r.FD))
		}
	}
	tg.echo("at-limit")
}

// TestReclaimAtFDLimitHangup: hangup keeps one hidden socket end per
// released file; a target at its fd limit has no room for them, so its
// unwatched fds get devnull instead (the first then closed at the limit,
// as devnull's always is), never a socket whose end would take a number
// the program still owns.
func TestReclaimAtFDLimitHangup(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "10", "-l")
	fds := tg.readyFDs()
	rep := reclaim(t, tg, fds, MethodHangup)
	if rep.Done() != len(fds) {
		t.Fatalf("done %d of %d: %+v", rep.Done(), len(fds), rep)
	}
	closed, null := 0, 0
	for _, r := range rep.FDs {
		t.Logf("fd %d: %s %s %q", r.FD, r.Result, r.Method, r.Reason)
		switch link := tg.fdLink(r.FD); {
		case r.Method == MethodClose && strings.Contains(r.Reason, "fd limit") && link == "closed":
			closed++
		case r.Method == MethodDevNull && strings.Contains(r.Reason, "too few left for the socket's hidden end") && link == "/dev/null":
			null++
		default:
			t.Errorf("fd %d: %+v is %q", r.FD, r, link)
		}
	}
	if closed != 1 || null != len(fds)-1 {
		t.Errorf("%d closed at the limit, %d devnull: want 1 and the rest", closed, null)
	}
	tg.echo("at-limit")
}

// TestHiddenEndsBudget: with a soft fd limit that leaves room for only 2
// hidden socket ends, 2 unwatched fds get their socket and the others
// devnull; watched fds (which devnull would break) are all left alone.
func TestHiddenEndsBudget(t *testing.T) {
	for _, c := range []struct {
		name   string
		args   []string
		method Method
	}{
		{"unwatched", []string{"-w", "0", "-u", "4"}, MethodQuiet},
		{"watched", []string{"-w", "4", "-u", "0"}, MethodHangup},
	} {
		t.Run(c.name, func(t *testing.T) {
			tg := startTarget(t, program(t, "filtered"), c.args...)
			fds := tg.readyFDs()
			ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", tg.pid))
			if err != nil {
				t.Fatal(err)
			}
			// Room for 2 more after the reserve of 32: not for 4 hidden ends.
			lim := unix.Rlimit{Cur: uint64(len(ents) + 34), Max: uint64(len(ents) + 34)}
			if err := unix.Prlimit(tg.pid, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
				t.Fatal(err)
			}
			rep := reclaim(t, tg, fds, c.method)
			sockets := 0
			for _, r := range rep.FDs {
				link := tg.fdLink(r.FD)
				t.Logf("fd %d: %s %s %q -> %s", r.FD, r.Result, r.Method, r.Reason, link)
				if c.name == "unwatched" && r.Result == ResultDone && r.Method == c.method && strings.HasPrefix(link, "socket:") {
					sockets++
				} else if c.name == "unwatched" && (r.Result != ResultDone || r.Method != MethodDevNull || link != "/dev/null" || !strings.Contains(r.Reason, "too few left")) {
					t.Errorf("fd %d: %+v is %q, want devnull for want of room", r.FD, r, link)
				}
				if c.name == "watched" && (r.Result != ResultSkipped || link != "/dev/ptmx" || !strings.Contains(r.Reason, "would leave it too few")) {
					t.Errorf("fd %d: %+v is %q, want left alone", r.FD, r, link)
				}
			}
			if c.name == "unwatched" && sockets != 2 {
				t.Errorf("%d sockets, want the 2 there is room for", sockets)
			}
			tg.echo("budget")
		})
	}
}

// TestReclaimAbortsOnUnstoppableThread: a thread waiting in vfork() sleeps
// uninterruptibly and cannot stop; the release must abort, leave nothing
// stopped or traced, and the thread must run on once its child goes.
func TestReclaimAbortsOnUnstoppableThread(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "5", "-v")
	var child int
	for i := 0; i < 1000 && child == 0; i++ {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", tg.pid, tg.pid))
		tids, _ := listTasks(tg.pid)
		for _, tid := range tids {
			data, _ = os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", tg.pid, tid))
			if f := strings.Fields(string(data)); len(f) > 0 {
				child, _ = strconv.Atoi(f[0])
			}
		}
		time.Sleep(time.Millisecond)
	}
	if child == 0 {
		t.Fatal("no vfork child")
	}
	_, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: tg.readyFDs(), StopTimeout: 200 * time.Millisecond}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "did not stop") {
		t.Fatalf("Reclaim: %v", err)
	}
	t.Logf("aborted: %v", err)
	tg.echo("after-abort")
	for _, fd := range tg.readyFDs() {
		if link := tg.fdLink(fd); link != "/dev/ptmx" {
			t.Errorf("fd %d changed to %q", fd, link)
		}
	}
	syscall.Kill(child, syscall.SIGKILL)
	// The vfork thread must now run on, neither stopped nor traced.
	for i := 0; ; i++ {
		s := threadsStopped(tg.pid)
		if len(s) == 0 && tracerOf(tg.pid) == 0 {
			break
		}
		if i > 5000 {
			t.Fatalf("threads left stopped: %v, tracer %d", s, tracerOf(tg.pid))
		}
		time.Sleep(time.Millisecond)
	}
	tg.echo("after-vfork")
}

func TestPreflightRefusals(t *testing.T) {
	if err := Preflight(1 << 30); err == nil || err.Error() != fmt.Sprintf("no process %d", 1<<30) {
		t.Errorf("missing pid: %v", err)
	}
	if err := Preflight(os.Getpid()); err == nil {
		t.Error("Preflight of itself succeeded")
	}
	// Kernel threads are only visible from the initial pid namespace.
	if kt := findKernelThread(); kt != 0 {
		if err := Preflight(kt); err == nil || !strings.Contains(err.Error(), "kernel thread") {
			t.Errorf("kernel thread %d: %v", kt, err)
		}
	}
	tg := startTarget(t, program(t, "target"), "-m", "1")
	if err := Preflight(tg.pid); err != nil {
		t.Errorf("plain target: %v", err)
	}
	_, err := Reclaim(context.Background(), Target{PID: tg.pid, StartTime: tg.startTime() + 1, FDs: tg.readyFDs()}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "reused") {
		t.Errorf("wrong start time: %v", err)
	}
	rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: []int{0, 1, 999}}, testLogger(t))
	if err != nil || rep.Done() != 0 {
		t.Errorf("non-PTY fds: %v %+v", err, rep)
	}
	for _, r := range rep.FDs {
		if r.Result != ResultSkipped || r.Reason == "" {
			t.Errorf("fd %d: %+v", r.FD, r)
		}
	}
	tg.echo("preflight")
}

// TestReclaimBusyLeaderAndNewThreads: the leader spins in user space (its pc
// is no syscall instruction, so one is taken from the vDSO) while another
// thread creates and joins threads nonstop (clone events, task rescans).
func TestReclaimBusyLeaderAndNewThreads(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "40", "-B", "-T", "-S", "1")
	fds := tg.readyFDs()
	for i := 0; i < len(fds); i += 5 {
		rep := reclaim(t, tg, fds[i:i+5], MethodDevNull)
		if rep.Done() != 5 {
			t.Fatalf("round %d: %+v", i/5, rep)
		}
		t.Logf("round %d: threads %d frozen %v", i/5, rep.Threads, rep.Frozen)
		tg.echo(fmt.Sprint("busy", i))
	}
	for _, fd := range fds {
		if link := tg.fdLink(fd); link != "/dev/null" {
			t.Errorf("fd %d reads back as %q", fd, link)
		}
	}
	if s := threadsStopped(tg.pid); len(s) > 0 {
		t.Errorf("left stopped: %v", s)
	}
}

// TestReclaimSeccompFilterSuspended: the filter is suspended for the
// injecting thread, so a filtered target gets the method asked for.
func TestReclaimSeccompFilterSuspended(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "6", "-f")
	tg.echo("filtered")
	rep := reclaim(t, tg, tg.readyFDs(), MethodDevNull)
	if rep.Done() != 6 || rep.Restore != RestoreDone {
		t.Fatalf("%+v", rep)
	}
	for _, r := range rep.FDs {
		if r.Method != MethodDevNull || tg.fdLink(r.FD) != "/dev/null" {
			t.Errorf("fd %d: %+v now %q", r.FD, r, tg.fdLink(r.FD))
		}
	}
	tg.echo("filtered-after")
}

func findKernelThread() int {
	for pid := 2; pid < 200; pid++ {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		if st, err := procfs.ParseStatus(data); err == nil && st.Kthread {
			return pid
		}
	}
	return 0
}

// The injecting thread is briefly put on one CPU to speed the calls up; its
// own affinity, and every other thread's, must come back exactly as it was:
// the whole mask, and a mask the program chose itself.
func TestReclaimRestoresCPUAffinity(t *testing.T) {
	if runtime.NumCPU() < 2 {
		t.Fatal("this test needs 2 CPUs; CI has 2")
	}
	tg := startTarget(t, program(t, "target"), "-m", "20", "-S", "2")
	fds := tg.readyFDs()
	tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", tg.pid))
	if err != nil {
		t.Fatal(err)
	}
	masks := func() map[string]unix.CPUSet {
		out := map[string]unix.CPUSet{}
		for _, e := range tids {
			tid, _ := strconv.Atoi(e.Name())
			var set unix.CPUSet
			if err := unix.SchedGetaffinity(tid, &set); err != nil {
				t.Fatal(err)
			}
			out[e.Name()] = set
		}
		return out
	}
	// First the whole mask, then the program's own choice for its main
	// thread: CPU 1 only.
	var cpu1 unix.CPUSet
	cpu1.Set(1)
	for round, setup := range []func(){func() {}, func() {
		if err := unix.SchedSetaffinity(tg.pid, &cpu1); err != nil {
			t.Fatal(err)
		}
	}} {
		setup()
		time.Sleep(20 * time.Millisecond) // let the main thread move
		before := masks()
		rep := reclaim(t, tg, fds[round*10:round*10+10], MethodDevNull)
		if rep.Done() != 10 {
			t.Fatalf("round %d: %+v", round, rep)
		}
		after := masks()
		for tid, m := range before {
			if after[tid] != m {
				t.Errorf("round %d: thread %s affinity %v, was %v", round, tid, after[tid], m)
			}
		}
		tg.echo(fmt.Sprint("affinity", round))
	}
}
