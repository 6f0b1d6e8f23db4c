//go:build linux && amd64

package inject

// Kill the releaser at every named point of a real release, and at random
// instants, by pid, by process group and through cgroup.kill (as systemd
// stops a unit), and check that the target returned to exactly its state
// by itself: alive, its registers, vector state, MXCSR, signal mask and
// sigaltstack as before (the C target checks its own after every read;
// the kernel's SigBlk of every thread is compared too), its epoll
// registrations as before, still working, no scratch mapping or temporary
// fd left once the routine ran, and its PTYs either all released or all
// untouched, never one PTY half.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// enginePoints are the named points of a crash-safe release, in order.
var enginePoints = []string{
	"frozen", "saved", "mmap-entry", "mmap-exit", "mprotect-entry", "mprotect-exit",
	"routine-started", "paused", "flipped", "resumed", "removed", "verify", "final",
	"munmap-entry", "munmap-exit", "sigreturn-entry", "sigreturn-exit", "restored", "detached-one",
}

// releasedFrom says whether a kill at point leaves the fds released: from
// the flip to phase B on, the routine finishes the release by itself.
func releasedFrom(point string) bool {
	at, flip := -1, -1
	for i, p := range enginePoints {
		if p == point {
			at = i
		}
		if p == "flipped" {
			flip = i
		}
	}
	return at >= flip
}

// leaksMapping says whether a kill at point leaves the scratch mapping:
// made, but the routine that removes it never started.
func leaksMapping(point string) bool {
	switch point {
	case "mmap-entry", "mmap-exit", "mprotect-entry", "mprotect-exit":
		return true
	}
	return false
}

type killHow int

const (
	killPID killHow = iota
	killGroup
	killCgroup
)

func (k killHow) String() string { return [...]string{"pid", "process group", "cgroup.kill"}[k] }

type crashRound struct {
	point string        // a named point, "@frozen" for a random delay, "-" for none
	delay time.Duration // after the frozen signal
	how   killHow
	pause time.Duration // the routine's pause timeout; 0 for the default
}

type crashTarget struct {
	name      string
	start     func(t *testing.T) *target
	goRuntime bool
	// methods of the three PTYs of a round; mask says which masters the
	// target watches in its epoll set (Go's runtime watches them all).
	methods [3]Method
	mask    string
	// stableVM: the target maps nothing by itself, so its mapped size
	// proves that no scratch mapping was left.
	stableVM bool
	reps     int
	random   int
}

// sigBlkAll returns SigBlk of every thread of pid.
func sigBlkAll(t *testing.T, pid int) map[int]uint64 {
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

// mappedSize sums the target's mappings.
func mappedSize(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(procPath(pid, "maps"))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, m := range parseMaps(data) {
		n += m.end - m.start
	}
	return n
}

func fdCount(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(procPath(pid, "fd"))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// cgroup2 returns a fresh cgroup v2 directory for a releaser, or "" when
// the machine has no cgroup v2 hierarchy.
func cgroup2(t *testing.T) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		dir := filepath.Join(strings.Fields(pre)[4], fmt.Sprintf("ptyreclaim-crash-%d-%d", os.Getpid(), time.Now().UnixNano()))
		if err := os.Mkdir(dir, 0o755); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, "cgroup.kill")); err != nil {
			os.Remove(dir)
			continue
		}
		return dir
	}
	return ""
}

// runRound opens three PTYs (a master and a dup of each) in tg, runs a
// releaser on them and kills it as asked, then checks the target. It
// returns the report when the releaser was not killed.
func runRound(t *testing.T, tg *target, ct crashTarget, r crashRound) *releaserOut {
	t.Helper()
	what := fmt.Sprintf("%s, point %s (delay %v, kill by %v)", ct.name, r.point, r.delay, r.how)
	tg.send("OPEN 3 " + ct.mask)
	f := strings.Fields(tg.expect("FDS"))[1:]
	if len(f) != 6 {
		t.Fatalf("%s: OPEN gave %v", what, f)
	}
	var fds, idx []int
	var spec []string
	for i, s := range f {
		fd, _ := strconv.Atoi(s)
		fds = append(fds, fd)
		if i%2 == 0 {
			idx = append(idx, tg.ptyIndex(fd))
		}
		spec = append(spec, fmt.Sprintf("%d=%s", fd, ct.methods[i/2]))
	}
	efd := epollFDOf(t, tg.pid)
	regsBefore := epollRegsOf(t, tg.pid, efd)
	blkBefore := sigBlkAll(t, tg.pid)
	fdsBefore := fdCount(t, tg.pid)
	vmBefore := mappedSize(t, tg.pid)

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s %s %d", releaserEnv, tg.pid, strings.Join(spec, ","), r.point, r.pause.Milliseconds()))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
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
	cg := ""
	if r.how == killCgroup {
		if cg = cgroup2(t); cg == "" {
			t.Logf("no cgroup v2 here: killing the process group instead")
			r.how = killGroup
		} else {
			defer os.Remove(cg)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rel := cmd.Process.Pid
	if cg != "" {
		if err := os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(rel)), 0o644); err != nil {
			t.Fatalf("moving the releaser into %s: %v", cg, err)
		}
	}
	kill := func() {
		switch r.how {
		case killGroup:
			syscall.Kill(-rel, syscall.SIGKILL)
		case killCgroup:
			if err := os.WriteFile(filepath.Join(cg, "cgroup.kill"), []byte("1"), 0o644); err != nil {
				t.Errorf("cgroup.kill: %v", err)
				syscall.Kill(rel, syscall.SIGKILL)
			}
		default:
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
			t.Errorf("%s: the releaser never reached it (%v): %s", what, ws, stderr.String())
		}
	}
	cmd.Wait()

	// The target must come back by itself: no longer traced, no thread
	// left stopped, and the injected thread out of the routine (its mask
	// is its own again) within the pause timeout.
	deadline := time.Now().Add(10 * time.Second)
	for tracerOf(tg.pid) != 0 || len(threadsStopped(tg.pid)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: target still traced by %d or stopped %v", what, tracerOf(tg.pid), threadsStopped(tg.pid))
		}
		time.Sleep(time.Millisecond)
	}
	for end := time.Now().Add(5 * time.Second); ; {
		after := sigBlkAll(t, tg.pid)
		var diff []string
		for tid, m := range blkBefore {
			if ct.goRuntime && tid != tg.pid {
				// Go threads block every signal for moments of their
				// own (thread creation, signal handling).
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
			t.Errorf("%s: %v", what, diff)
			break
		}
		time.Sleep(time.Millisecond)
	}
	tg.send("CHECK")
	ok := strings.Fields(tg.expect("OK"))
	if len(ok) != 4 || ok[3] != "0" {
		t.Fatalf("%s: target reports %v", what, ok)
	}
	if s := tg.eintrLines(); len(s) > 0 {
		t.Errorf("%s: target saw EINTR %v", what, s)
	}

	// All or nothing, and never one PTY half.
	states := map[bool]int{}
	released := false
	for i := 0; i < len(fds); i += 2 {
		m, d := tg.fdLink(fds[i]), tg.fdLink(fds[i+1])
		if m != d {
			t.Errorf("%s: PTY %d half released: fd %d is %s, fd %d is %s", what, idx[i/2], fds[i], m, fds[i+1], d)
		}
		rel := m != "/dev/ptmx"
		if rel && !strings.HasPrefix(m, wantLink(ct.methods[i/2])) {
			t.Errorf("%s: fd %d is %q, want a %s replacement", what, fds[i], m, ct.methods[i/2])
		}
		states[rel]++
		released = rel
	}
	if len(states) != 1 {
		t.Errorf("%s: some PTYs released, some not: %v", what, states)
	}
	if killed && r.point != "@frozen" && released != releasedFrom(r.point) {
		t.Errorf("%s: released=%v, want %v", what, released, releasedFrom(r.point))
	}
	// Every watched master keeps its registration, with its events and
	// data, on whatever it now is; nothing new is registered.
	regsAfter := epollRegsOf(t, tg.pid, efd)
	for _, fd := range fds {
		b, wasReg := regsBefore[fd]
		a, isReg := regsAfter[fd]
		switch {
		case wasReg != isReg:
			t.Errorf("%s: fd %d registered %v, was %v", what, fd, isReg, wasReg)
		case wasReg && (a.data != b.data || a.events&^epollWakeup != b.events&^epollWakeup):
			t.Errorf("%s: fd %d registration %+v, was %+v", what, fd, a, b)
		}
	}
	// No temporary fd left (hangup and quiet keep their socket's other
	// end, one per released file), and no scratch mapping once the
	// routine ran.
	wantFDs := fdsBefore
	if released {
		for _, m := range ct.methods {
			if m.Pollable() {
				wantFDs++
			}
		}
	}
	if got := fdCount(t, tg.pid); got != wantFDs {
		t.Errorf("%s: target has %d fds, want %d", what, got, wantFDs)
	}
	if ct.stableVM {
		vm := mappedSize(t, tg.pid)
		switch {
		case killed && r.point != "@frozen" && leaksMapping(r.point):
			if vm < vmBefore {
				t.Errorf("%s: mapped size shrank: %d -> %d", what, vmBefore, vm)
			}
		case killed && r.point == "@frozen":
			if vm != vmBefore {
				t.Logf("%s: mapped size %d -> %d (a kill between mmap and the routine's start)", what, vmBefore, vm)
			}
		case vm != vmBefore:
			t.Errorf("%s: mapped size %d -> %d: a scratch mapping was left", what, vmBefore, vm)
		}
	}
	if released {
		for _, i := range idx {
			for end := time.Now().Add(2 * time.Second); ptsExists(i) && time.Now().Before(end); {
				time.Sleep(time.Millisecond)
			}
			if ptsExists(i) {
				t.Errorf("%s: PTY %d still allocated after its fds were released", what, i)
			}
		}
		if !ct.goRuntime && ct.methods[1] == MethodHangup && ct.mask[1] == '1' {
			// The hang-up is seen by the target's own epoll set: the
			// socket shut down for reading is readable (EOF) under the
			// registration's EPOLLIN.
			// C prints the whole data word, Python the fd it holds.
			tg.send("POLL")
			d := regsBefore[fds[2]].data
			p, hup := tg.expect("POLL"), false
			for _, tok := range strings.Fields(p)[2:] {
				data, ev, _ := strings.Cut(tok, ":")
				e, _ := strconv.ParseUint(ev, 16, 32)
				if (data == fmt.Sprintf("%x", d) || data == fmt.Sprintf("%x", uint32(d))) && e&syscall.EPOLLIN != 0 {
					hup = true
				}
			}
			if !hup {
				t.Errorf("%s: after the hang-up the target polls %q, want EPOLLIN with data %#x", what, p, d)
			}
		}
	}
	tg.echo("alive")
	tg.send("CLOSE")
	tg.expect("CLOSED")
	if killed {
		return nil
	}
	var out releaserOut
	if err := json.Unmarshal([]byte(stdout.String()), &out); err != nil {
		t.Fatalf("%s: releaser output %q (%s): %v", what, stdout.String(), stderr.String(), err)
	}
	return &out
}

func TestCrashSafeKills(t *testing.T) {
	targets := []crashTarget{
		{name: "c-single", start: func(t *testing.T) *target { return startTarget(t, program(t, "cstate")) },
			methods: [3]Method{MethodDevNull, MethodHangup, MethodQuiet}, mask: "011", stableVM: true, reps: 3, random: 20},
		{name: "c-threads", start: func(t *testing.T) *target { return startTarget(t, program(t, "cstate"), "-t", "3") },
			methods: [3]Method{MethodDevNull, MethodHangup, MethodQuiet}, mask: "011", stableVM: true, reps: 2, random: 15},
		{name: "go", start: func(t *testing.T) *target { return startTarget(t, program(t, "gostate")) }, goRuntime: true,
			methods: [3]Method{MethodHangup, MethodQuiet, MethodHangup}, mask: "111", reps: 2, random: 15},
		{name: "python", start: func(t *testing.T) *target { return startTarget(t, "/usr/bin/python3", "testdata/pystate.py") },
			methods: [3]Method{MethodDevNull, MethodHangup, MethodQuiet}, mask: "011", reps: 2, random: 15},
	}
	kills, ran := 0, 0
	byHow := map[killHow]int{}
	for _, ct := range targets {
		t.Run(ct.name, func(t *testing.T) {
			ran++
			tg := ct.start(t)
			// Without a kill the release must be crash-safe.
			out := runRound(t, tg, ct, crashRound{point: "-"})
			if out.Err != "" || !out.Report.CrashSafe || out.Report.Done() != 6 || out.Report.Restore != RestoreDone {
				t.Fatalf("plain release: err %q crash-safe %v (%s) done %d restore %s: %+v",
					out.Err, out.Report.CrashSafe, out.Report.CrashSafeReason, out.Report.Done(), out.Report.Restore, out.Report)
			}
			t.Logf("plain release: frozen %v, notes %v", out.Report.Frozen, out.Report.Notes)
			n := 0
			for rep := 0; rep < ct.reps; rep++ {
				for _, p := range enginePoints {
					how := killHow(n % 3)
					pause := 100 * time.Millisecond
					if rep == 0 {
						pause = 0 // the default
					}
					runRound(t, tg, ct, crashRound{point: p, how: how, pause: pause})
					kills++
					byHow[how]++
					n++
				}
			}
			rng := rand.New(rand.NewSource(int64(tg.pid)))
			for i := 0; i < ct.random; i++ {
				how := killHow(n % 3)
				runRound(t, tg, ct, crashRound{point: "@frozen", delay: time.Duration(rng.Intn(3000)) * time.Microsecond, how: how, pause: 100 * time.Millisecond})
				kills++
				byHow[how]++
				n++
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
	t.Logf("%d kills: %v", kills, byHow)
	if ran == len(targets) && kills < 200 {
		t.Errorf("only %d kills", kills)
	}
}
