package act

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// fakeMac is a pretend macOS: processes by pid with their start times,
// fds by pid and fd, and what signals and lldb do to them.
type fakeMac struct {
	start   map[int]uint64
	fds     map[int]map[int]libproc.FDNow
	ignores map[int]syscall.Signal // a process that survives this signal
	signals []string
	lldbRun [][]string
	// lldb, when set, is what the fake lldb does to the fds and prints.
	lldb    func(args []string) string
	lldbErr error
	blocked string
	refused string
	lastIO  time.Time
	// kq are the process's kqueue registrations (one process: pid 70);
	// kqErr makes them unreadable; keventFails makes the fake kevent fail
	// for that filter.
	kq          []libproc.KQueueReg
	kqErr       error
	keventFails int16
}

func (f *fakeMac) sys() macSys {
	return macSys{
		identity: func(pid int) (uint64, bool, error) {
			s, ok := f.start[pid]
			return s, !ok, nil
		},
		signal: func(pid int, sig syscall.Signal) error {
			f.signals = append(f.signals, sigName(sig))
			if _, ok := f.start[pid]; !ok {
				return syscall.ESRCH
			}
			if f.ignores[pid] != sig {
				delete(f.start, pid)
				delete(f.fds, pid)
			}
			return nil
		},
		sleep:   func(time.Duration) {},
		blocked: func(int, *snapshot.BlockedRead) string { return f.blocked },
		inPlace: func(int) string { return f.refused },
		look: func(pid, fd int) (libproc.FDNow, error) {
			if _, ok := f.start[pid]; !ok {
				return libproc.FDNow{}, syscall.ESRCH
			}
			if now, ok := f.fds[pid][fd]; ok {
				return now, nil
			}
			return libproc.FDNow{Kind: libproc.FDClosed}, nil
		},
		lastIO: func(int) time.Time { return f.lastIO },
		kqueues: func(int) ([]libproc.KQueueReg, error) {
			return append([]libproc.KQueueReg(nil), f.kq...), f.kqErr
		},
		lldb: func(_ context.Context, args []string) (string, error) {
			f.lldbRun = append(f.lldbRun, args)
			if f.lldbErr != nil {
				return "", f.lldbErr
			}
			return f.lldb(args), nil
		},
	}
}

func (f *fakeMac) actor() *macActor {
	return &macActor{sys: f.sys(), grace: time.Second, exprTimeout: time.Second,
		scanLastIO: func(snapshot.PTYID) time.Time { return time.Unix(100, 0) }}
}

func master(index int) libproc.FDNow {
	return libproc.FDNow{Kind: libproc.FDPTY, Side: snapshot.Master, Index: index}
}

func ptyItem(p *snapshot.Process, fd int, verdict plan.Verdict, method policy.Method) plan.Item {
	return plan.Item{Finding: classify.Finding{Kind: classify.KindPTY, Process: p, FD: fd, Side: snapshot.Master,
		PTY: snapshot.PTYID{Index: fd + 10}, State: classify.Unattached, Proven: true}, Verdict: verdict, Method: method}
}

func TestKillHolderOnce(t *testing.T) {
	f := &fakeMac{start: map[int]uint64{50: 7}}
	m := f.actor()
	holder := &snapshot.Process{PID: 50, StartTime: 7, InPlaceRefused: "hardened runtime: in-place reclaim refused"}
	var actions []Action
	// Through Kill, as the Executor routes kill verdicts, and Reclaim.
	for _, fd := range []int{3, 4} {
		actions = append(actions, m.kill(ptyItem(holder, fd, plan.Kill, policy.MethodKillHolder), zap.NewNop()))
	}
	got, _ := m.reclaim(context.Background(), holder, []plan.Item{ptyItem(holder, 5, plan.Kill, policy.MethodKillHolder)}, zap.NewNop())
	actions = append(actions, got...)
	if strings.Join(f.signals, ",") != "SIGTERM" {
		t.Errorf("signals %v, want one SIGTERM", f.signals)
	}
	for i, a := range actions {
		if a.Result != Done || a.Method != policy.MethodKillHolder || a.FD == nil {
			t.Errorf("action %d: %+v", i, a)
		}
	}
	if !strings.Contains(actions[2].Reason, "ended once for all its fds (with fd 3)") {
		t.Errorf("later item: %q", actions[2].Reason)
	}
}

func TestKillHolderReused(t *testing.T) {
	f := &fakeMac{start: map[int]uint64{50: 8}}
	holder := &snapshot.Process{PID: 50, StartTime: 7}
	a := f.actor().kill(ptyItem(holder, 3, plan.Kill, policy.MethodKillHolder), zap.NewNop())
	if a.Result != Skipped || !strings.Contains(a.Reason, "another process now") || len(f.signals) != 0 {
		t.Errorf("%+v, signals %v", a, f.signals)
	}
}

func orphanItem(pid int) plan.Item {
	p := &snapshot.Process{PID: pid, StartTime: 9, Threads: 1, Blocked: &snapshot.BlockedRead{FD: 0, Pipe: 0xA1}}
	return plan.Item{Finding: classify.Finding{Kind: classify.KindOrphan, Process: p, State: classify.Orphan}, Verdict: plan.Kill}
}

func TestKillOrphan(t *testing.T) {
	cases := []struct {
		name    string
		f       *fakeMac
		result  string
		reason  string
		signals string
	}{
		{"ends on SIGTERM", &fakeMac{start: map[int]uint64{60: 9}}, Done, "", "SIGTERM"},
		{"needs SIGKILL", &fakeMac{start: map[int]uint64{60: 9}, ignores: map[int]syscall.Signal{60: syscall.SIGTERM}}, Done, "", "SIGTERM,SIGKILL"},
		{"already gone", &fakeMac{start: map[int]uint64{}}, Skipped, "already exited", ""},
		{"pid reused", &fakeMac{start: map[int]uint64{60: 10}}, Skipped, "another process now", ""},
		{"no longer stuck", &fakeMac{start: map[int]uint64{60: 9}, blocked: "its thread is no longer waiting"}, Skipped, "no longer waiting", ""},
	}
	for _, c := range cases {
		a := c.f.actor().kill(orphanItem(60), zap.NewNop())
		if a.Result != c.result || !strings.Contains(a.Reason, c.reason) || strings.Join(c.f.signals, ",") != c.signals || a.Method != "kill" {
			t.Errorf("%s: %+v, signals %v", c.name, a, c.f.signals)
		}
	}
}

func TestKillOrphanStopsWhenItWakesAfterSIGTERM(t *testing.T) {
	f := &fakeMac{start: map[int]uint64{60: 9}, ignores: map[int]syscall.Signal{60: syscall.SIGTERM}}
	m := f.actor()
	calls := 0
	m.sys.blocked = func(int, *snapshot.BlockedRead) string {
		calls++
		if calls > 1 {
			return "it is no longer blocked in the same read"
		}
		return ""
	}
	a := m.kill(orphanItem(60), zap.NewNop())
	if a.Result != Skipped || !strings.HasPrefix(a.Reason, "after SIGTERM ") || strings.Join(f.signals, ",") != "SIGTERM" {
		t.Errorf("%+v, signals %v", a, f.signals)
	}
}

// lldbReleases is a fake lldb that does what the script asks to the fds it
// names and prints like lldb.
func lldbReleases(f *fakeMac, pid int) func(args []string) string {
	return func(args []string) string {
		var b strings.Builder
		for i := 0; i+1 < len(args); i++ {
			if args[i] != "-o" {
				continue
			}
			cmd := args[i+1]
			b.WriteString("(lldb) " + cmd + "\n")
			for fd := range f.fds[pid] {
				if strings.HasSuffix(cmd, "dup2)($ptyreclaim_null, "+strconv.Itoa(fd)+")") {
					f.fds[pid][fd] = libproc.FDNow{Kind: libproc.FDDevNull}
					b.WriteString("(int) $0 = " + strconv.Itoa(fd) + "\n")
				}
			}
			if strings.HasSuffix(cmd, "-- $ptyreclaim_null") {
				b.WriteString("(int) $ptyreclaim_null = 40\n")
			}
		}
		return b.String()
	}
}

func TestReleaseInPlace(t *testing.T) {
	f := &fakeMac{
		start:  map[int]uint64{70: 3},
		fds:    map[int]map[int]libproc.FDNow{70: {13: master(23), 14: master(99), 15: master(25)}},
		lastIO: time.Unix(100, 0),
	}
	f.lldb = lldbReleases(f, 70)
	p := &snapshot.Process{PID: 70, StartTime: 3}
	items := []plan.Item{
		ptyItem(p, 13, plan.Reclaim, policy.MethodDevNull),
		ptyItem(p, 14, plan.Reclaim, policy.MethodDevNull), // fd 14 now names another PTY
		ptyItem(p, 15, plan.Reclaim, policy.MethodDevNull),
	}
	actions, _ := f.actor().reclaim(context.Background(), p, items, zap.NewNop())
	if len(f.lldbRun) != 1 {
		t.Fatalf("lldb ran %d times, want once for the process", len(f.lldbRun))
	}
	script := strings.Join(f.lldbRun[0], " ")
	if !strings.Contains(script, "dup2)($ptyreclaim_null, 13)") || strings.Contains(script, ", 14)") {
		t.Errorf("script touches the wrong fds: %s", script)
	}
	want := []string{Done, Skipped, Done}
	for i, a := range actions {
		if a.Result != want[i] || a.Method != policy.MethodDevNull {
			t.Errorf("fd %d: %+v, want %s", *a.FD, a, want[i])
		}
	}
	if !strings.Contains(actions[1].Reason, "changed since the scan") {
		t.Errorf("fd 14: %q", actions[1].Reason)
	}
}

func TestReleaseInPlaceRefusals(t *testing.T) {
	fresh := func() *fakeMac {
		f := &fakeMac{start: map[int]uint64{70: 3}, fds: map[int]map[int]libproc.FDNow{70: {13: master(23)}}, lastIO: time.Unix(100, 0)}
		f.lldb = func([]string) string { return "" }
		return f
	}
	p := &snapshot.Process{PID: 70, StartTime: 3}
	cases := []struct {
		name   string
		change func(f *fakeMac)
		result string
		reason string
		lldb   bool
	}{
		{"lldb missing", func(f *fakeMac) { f.lldbErr = errors.New("lldb not found (looked in x): install") }, Failed, "lldb not found", true},
		{"task port refused now", func(f *fakeMac) { f.refused = "hardened runtime: in-place reclaim refused" }, Failed, "hardened runtime", false},
		{"I/O since the scan", func(f *fakeMac) { f.lastIO = time.Unix(200, 0) }, Skipped, "saw I/O since the scan", false},
		{"exited", func(f *fakeMac) { delete(f.start, 70) }, Skipped, "already exited", false},
		{"lldb changed nothing", func(*fakeMac) {}, Failed, "lldb printed no result for this fd; fd 13 still holds the master of ttys023", true},
	}
	for _, c := range cases {
		f := fresh()
		c.change(f)
		actions, _ := f.actor().reclaim(context.Background(), p, []plan.Item{ptyItem(p, 13, plan.Reclaim, policy.MethodDevNull)}, zap.NewNop())
		a := actions[0]
		if a.Result != c.result || !strings.Contains(a.Reason, c.reason) || (len(f.lldbRun) > 0) != c.lldb {
			t.Errorf("%s: %+v (lldb ran %d)", c.name, a, len(f.lldbRun))
		}
	}
}

// lldbPollable does what lldb would for hangup and quiet: the socket pair,
// dup2 (which drops the fd's knotes, as xnu's knote_fdclose does), and
// each kevent EV_ADD, read from its command's words.
func lldbPollable(f *fakeMac, pid int) func(args []string) string {
	return func(args []string) string {
		var b strings.Builder
		for i := 0; i+1 < len(args); i++ {
			if args[i] != "-o" {
				continue
			}
			cmd := args[i+1]
			b.WriteString("(lldb) " + cmd + "\n")
			if strings.Contains(cmd, "socketpair") {
				b.WriteString("(int) $0 = 41\n")
			}
			for fd := range f.fds[pid] {
				if strings.HasSuffix(cmd, "dup2)($ptyreclaim_repl, "+strconv.Itoa(fd)+")") {
					f.fds[pid][fd] = libproc.FDNow{Kind: libproc.FDSocket}
					var kept []libproc.KQueueReg
					for _, r := range f.kq {
						if r.Ident != uint64(fd) {
							kept = append(kept, r)
						}
					}
					f.kq = kept
					b.WriteString("(int) $1 = " + strconv.Itoa(fd) + "\n")
				}
			}
			if _, rest, ok := strings.Cut(cmd, "unsigned long long ev[4] = {"); ok {
				var w [4]uint64
				var kq int
				fmt.Sscanf(rest, "%dULL, %dULL, %dULL, %dULL}", &w[0], &w[1], &w[2], &w[3])
				fmt.Sscanf(rest[strings.Index(rest, "kevent)(")+len("kevent)("):], "%d,", &kq)
				k := libproc.Knote{Ident: w[0], Filter: int16(uint16(w[1])), Flags: uint16(w[1] >> 16), UData: w[3]}
				if k.Filter == f.keventFails {
					b.WriteString("(int) $2 = -1\n")
				} else {
					f.kq = append(f.kq, libproc.KQueueReg{KQ: kq, Knote: k})
					b.WriteString("(int) $2 = 0\n")
				}
			}
		}
		return b.String()
	}
}

func watchedItem(p *snapshot.Process, fd int, method policy.Method) plan.Item {
	it := ptyItem(p, fd, plan.Reclaim, method)
	it.Watched = true
	return it
}

// TestReleaseInPlaceWatched: a watched fd gets the hangup socket with its
// kqueue registrations (two kqueues) made again, same filter and udata;
// an unwatched fd of the same process gets /dev/null in its own session.
func TestReleaseInPlaceWatched(t *testing.T) {
	fresh := func() (*fakeMac, *snapshot.Process, []plan.Item) {
		f := &fakeMac{
			start:  map[int]uint64{70: 3},
			fds:    map[int]map[int]libproc.FDNow{70: {13: master(23), 15: master(25)}},
			lastIO: time.Unix(100, 0),
			kq: []libproc.KQueueReg{
				{KQ: 4, Knote: libproc.Knote{Ident: 13, Filter: -1, Flags: 0x1, UData: 0xfeed}},
				{KQ: 9, Knote: libproc.Knote{Ident: 13, Filter: -2, Flags: 0x21, UData: 0xbeef}},
				{KQ: 4, Knote: libproc.Knote{Ident: 3, Filter: -1}}, // another fd: untouched
			},
			keventFails: 1, // no filter
		}
		pollable := lldbPollable(f, 70)
		devnull := lldbReleases(f, 70)
		f.lldb = func(args []string) string {
			if strings.Contains(strings.Join(args, " "), "socketpair") {
				return pollable(args)
			}
			return devnull(args)
		}
		p := &snapshot.Process{PID: 70, StartTime: 3}
		return f, p, []plan.Item{watchedItem(p, 13, policy.MethodHangup), ptyItem(p, 15, plan.Reclaim, policy.MethodDevNull)}
	}

	f, p, items := fresh()
	actions, _ := f.actor().reclaim(context.Background(), p, items, zap.NewNop())
	if len(f.lldbRun) != 2 {
		t.Fatalf("lldb ran %d times, want once per method", len(f.lldbRun))
	}
	for i, want := range []policy.Method{policy.MethodHangup, policy.MethodDevNull} {
		if a := actions[i]; a.Result != Done || a.Method != want || a.Reason != "" {
			t.Errorf("fd %d: %+v", *a.FD, a)
		}
	}
	if got := libproc.MissingRegs([]libproc.KQueueReg{
		{KQ: 4, Knote: libproc.Knote{Ident: 13, Filter: -1, UData: 0xfeed}},
		{KQ: 9, Knote: libproc.Knote{Ident: 13, Filter: -2, UData: 0xbeef}},
		{KQ: 4, Knote: libproc.Knote{Ident: 3, Filter: -1}},
	}, f.kq); len(got) != 0 {
		t.Errorf("registrations not made again: %+v (now %+v)", got, f.kq)
	}
	for _, r := range f.kq {
		if r.Ident == 13 && r.Filter == -2 && r.Flags != 0x25 { // EV_ADD|EV_CLEAR|EV_ENABLE
			t.Errorf("write registration flags %#x, want 0x25", r.Flags)
		}
	}
	if script := strings.Join(f.lldbRun[0], " "); strings.Contains(script, ", 15)") || !strings.Contains(script, "shutdown") {
		t.Errorf("hangup session: %s", script)
	}

	// A kevent that fails: the fd is the socket, but the loop would wait
	// for events that never come. Failed, saying which registration.
	f, p, items = fresh()
	f.keventFails = -2
	actions, _ = f.actor().reclaim(context.Background(), p, items, zap.NewNop())
	if a := actions[0]; a.Result != Failed || !strings.Contains(a.Reason, "not registered as before: kqueue fd 9 filter -2 udata 0xbeef: kevent returned -1 in the holder") {
		t.Errorf("failed kevent: %+v", a)
	}

	// A registration in a libdispatch workloop cannot be moved: skipped,
	// and the unwatched fd still released.
	f, p, items = fresh()
	f.kq = append(f.kq, libproc.KQueueReg{KQ: -1, Knote: libproc.Knote{Ident: 13, Filter: -1}})
	actions, _ = f.actor().reclaim(context.Background(), p, items, zap.NewNop())
	if a := actions[0]; a.Result != Skipped || !strings.Contains(a.Reason, "no fd (libdispatch)") || len(f.lldbRun) != 1 || actions[1].Result != Done {
		t.Errorf("workloop: %+v, lldb ran %d", actions, len(f.lldbRun))
	}

	// Unreadable kqueues: nothing moved, nothing touched.
	f, p, items = fresh()
	f.kqErr = errors.New("proc_pidinfo: EPERM")
	actions, _ = f.actor().reclaim(context.Background(), p, items[:1], zap.NewNop())
	if a := actions[0]; a.Result != Failed || !strings.Contains(a.Reason, "kqueue registrations are unreadable") || len(f.lldbRun) != 0 {
		t.Errorf("unreadable: %+v", a)
	}

	// A watched fd with a method a kqueue cannot watch is never touched.
	f, p, _ = fresh()
	actions, _ = f.actor().reclaim(context.Background(), p, []plan.Item{watchedItem(p, 13, policy.MethodDevNull)}, zap.NewNop())
	if a := actions[0]; a.Result != Skipped || !strings.Contains(a.Reason, "cannot be watched") || len(f.lldbRun) != 0 {
		t.Errorf("watched devnull: %+v", a)
	}
}
