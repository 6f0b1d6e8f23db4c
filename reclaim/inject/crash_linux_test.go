//go:build linux && amd64

package inject

// Kill the releaser at every named point of a real release, and at random
// instants, and check that the target returned to exactly its state by
// itself: alive, its registers, vector state, MXCSR, signal mask and
// sigaltstack as before (the C target checks its own after every read;
// the kernel's SigBlk of every thread is compared too), still working, and
// its PTYs either all released or all untouched, never one PTY half.

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// enginePoints are the named points of a crash-safe release, in order;
// the routine's calls run from "routine-started" on.
var enginePoints = []string{
	"frozen", "saved", "mmap-entry", "mmap-exit", "mprotect-entry", "mprotect-exit",
	"routine-started", "routine-done", "interrupted", "munmap-entry", "munmap-exit",
	"mask-restored", "restored", "detached-one",
}

func releasedFrom(point string) bool {
	at, start := -1, -1
	for i, p := range enginePoints {
		if p == point {
			at = i
		}
		if p == "routine-started" {
			start = i
		}
	}
	return at >= start
}

type crashRound struct {
	point string        // a named point, "@frozen" for a random delay, "-" for none
	delay time.Duration // after the frozen signal
	group bool          // kill the releaser's whole process group
	// goRuntime: only the injected thread's mask is stable enough to
	// compare.
	goRuntime bool
}

// sigBlk returns SigBlk of every thread of pid.
func sigBlk(t *testing.T, pid int) map[int]uint64 {
	t.Helper()
	out := map[int]uint64{}
	tids, _ := listTasks(pid)
	for _, tid := range tids {
		data, err := os.ReadFile(taskFile(pid, tid, "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "SigBlk:"); ok {
				m, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				out[tid] = m
			}
		}
	}
	return out
}

// runRound opens three PTYs (a master and a dup of each) in tg, runs a
// releaser on them and kills it as asked, then checks the target. It
// returns the report when the releaser was not killed.
func runRound(t *testing.T, tg *target, r crashRound) *releaserOut {
	t.Helper()
	tg.send("OPEN 3")
	f := strings.Fields(tg.expect("FDS"))[1:]
	var fds []int
	var idx []int
	for i, s := range f {
		fd, _ := strconv.Atoi(s)
		fds = append(fds, fd)
		if i%2 == 0 {
			idx = append(idx, tg.ptyIndex(fd))
		}
	}
	before := sigBlk(t, tg.pid)
	var fdList []string
	for _, fd := range fds {
		fdList = append(fdList, strconv.Itoa(fd))
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s %s", releaserEnv, tg.pid, strings.Join(fdList, ","), r.point))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout strings.Builder
	cmd.Stdout = &stdout
	var sigR *os.File
	if r.point == "@frozen" {
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		cmd.ExtraFiles = []*os.File{pw}
		sigR = pr
		defer pw.Close()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rel := cmd.Process.Pid
	kill := func() {
		if r.group {
			syscall.Kill(-rel, syscall.SIGKILL)
		} else {
			syscall.Kill(rel, syscall.SIGKILL)
		}
	}
	killed := false
	switch r.point {
	case "-":
	case "@frozen":
		cmd.ExtraFiles[0].Close()
		b := make([]byte, 1)
		if n, _ := sigR.Read(b); n == 1 {
			time.Sleep(r.delay)
			kill()
			killed = true
		}
	default:
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(rel, &ws, syscall.WUNTRACED, nil); err != nil {
			t.Fatal(err)
		}
		if ws.Stopped() {
			kill()
			killed = true
		} else {
			t.Errorf("point %s: the releaser never reached it (%v)", r.point, ws)
		}
	}
	cmd.Wait()

	// The target must come back by itself: no longer traced, no thread
	// left stopped (the routine returns within selfReturnAfter).
	deadline := time.Now().Add(10 * time.Second)
	for tracerOf(tg.pid) != 0 || len(threadsStopped(tg.pid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("point %s: target still traced by %d or stopped %v", r.point, tracerOf(tg.pid), threadsStopped(tg.pid))
		}
		time.Sleep(time.Millisecond)
	}
	tg.send("CHECK")
	ok := strings.Fields(tg.expect("OK"))
	if len(ok) != 4 || ok[3] != "0" {
		t.Fatalf("point %s: target reports %v", r.point, ok)
	}
	if s := tg.eintrLines(); len(s) > 0 {
		t.Errorf("point %s: target saw EINTR %v", r.point, s)
	}
	// The injected thread may still wait in the routine (up to
	// selfReturnAfter) when another thread answered CHECK (Go): poll.
	// Go threads block every signal for a moment now and then (thread
	// creation, signal handling), so in a Go target only the injected
	// thread, the leader, is compared.
	for end := time.Now().Add(5 * time.Second); ; {
		after := sigBlk(t, tg.pid)
		var diff []string
		for tid, m := range before {
			if r.goRuntime && tid != tg.pid {
				continue
			}
			if a, ok := after[tid]; ok && a != m {
				diff = append(diff, fmt.Sprintf("thread %d SigBlk %016x, was %016x", tid, a, m))
			}
		}
		if len(diff) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Errorf("point %s: %v", r.point, diff)
			break
		}
		time.Sleep(time.Millisecond)
	}
	// All or nothing, and never one PTY half released.
	states := map[string]int{}
	for i := 0; i < len(fds); i += 2 {
		m, d := tg.fdLink(fds[i]), tg.fdLink(fds[i+1])
		if m != d {
			t.Errorf("point %s: PTY %d half released: fd %d is %s, fd %d is %s", r.point, idx[i/2], fds[i], m, fds[i+1], d)
		}
		states[m]++
	}
	if len(states) != 1 {
		t.Errorf("point %s: some PTYs released, some not: %v", r.point, states)
	}
	released := states["/dev/null"] == len(fds)/2
	if killed && r.point != "@frozen" && released != releasedFrom(r.point) {
		t.Errorf("point %s: released=%v, want %v", r.point, released, releasedFrom(r.point))
	}
	if released {
		for _, i := range idx {
			for end := time.Now().Add(2 * time.Second); ptsExists(i) && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
			if ptsExists(i) {
				t.Errorf("point %s: PTY %d still allocated after its fds were released", r.point, i)
			}
		}
	}
	tg.send("CLOSE")
	tg.expect("CLOSED")
	if killed {
		return nil
	}
	var out releaserOut
	if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil {
		t.Fatalf("releaser output %q: %v", stdout.String(), err)
	}
	return &out
}

func TestCrashSafeKills(t *testing.T) {
	targets := []struct {
		name  string
		start func(t *testing.T) *target
		reps  int
		isGo  bool
	}{
		{"c-single", func(t *testing.T) *target { return startTarget(t, program(t, "cstate")) }, 4, false},
		{"c-threads", func(t *testing.T) *target { return startTarget(t, program(t, "cstate"), "-t", "3") }, 3, false},
		{"go", func(t *testing.T) *target { return startTarget(t, program(t, "gostate")) }, 2, true},
		{"python", func(t *testing.T) *target { return startTarget(t, "/usr/bin/python3", "testdata/pystate.py") }, 2, false},
	}
	kills, ran := 0, 0
	for _, tc := range targets {
		t.Run(tc.name, func(t *testing.T) {
			ran++
			tg := tc.start(t)
			// Without a kill the release must be crash-safe.
			out := runRound(t, tg, crashRound{point: "-", goRuntime: tc.isGo})
			if out.Err != "" || !out.Report.CrashSafe || out.Report.Done() != 6 {
				t.Fatalf("plain release: err %q crash-safe %v (%s) done %d: %+v",
					out.Err, out.Report.CrashSafe, out.Report.CrashSafeReason, out.Report.Done(), out.Report)
			}
			for rep := 0; rep < tc.reps; rep++ {
				for _, p := range enginePoints {
					runRound(t, tg, crashRound{point: p, group: rep%2 == 1, goRuntime: tc.isGo})
					kills++
				}
			}
			rng := rand.New(rand.NewSource(int64(tg.pid)))
			for i := 0; i < 15; i++ {
				runRound(t, tg, crashRound{point: "@frozen", delay: time.Duration(rng.Intn(3000)) * time.Microsecond, group: i%2 == 0, goRuntime: tc.isGo})
				kills++
			}
			// Still handles signals, on its sigaltstack for the C target.
			syscall.Tgkill(tg.pid, tg.pid, syscall.SIGUSR1)
			for end := time.Now().Add(5 * time.Second); ; {
				tg.send("CHECK")
				f := strings.Fields(tg.expect("OK"))
				if f[2] != "0" {
					break
				}
				if time.Now().After(end) {
					t.Fatalf("SIGUSR1 not handled (on the altstack): %v", f)
				}
				time.Sleep(10 * time.Millisecond)
			}
			tg.echo("still-here")
		})
	}
	t.Logf("%d kills", kills)
	if ran == len(targets) && kills < 200 {
		t.Errorf("only %d kills", kills)
	}
}
