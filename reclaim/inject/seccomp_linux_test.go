//go:build linux

package inject

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// injectedCalls are every call the injector makes for devnull, hangup and
// quiet; filtered.c filters one of them.
var injectedCalls = []string{"openat", "dup3", "close", "mmap", "munmap", "epoll_ctl", "socketpair", "shutdown"}

// filteredTarget starts filtered.c with 2 watched and 2 unwatched masters
// and the methods the policy would give them: the watched ones a pollable
// replacement (hangup, whose calls are socketpair and shutdown; quiet when
// the filtered call is socketpair, to reach it from both), the others
// devnull.
func filteredTarget(t *testing.T, call, action string) (*target, map[int]Method, int) {
	t.Helper()
	tg := startTarget(t, program(t, "filtered"), "-w", "2", "-u", "2", "-c", call, "-a", action)
	fds := tg.readyFDs()
	watchedMethod := MethodHangup
	if call == "socketpair" {
		watchedMethod = MethodQuiet
	}
	methods := map[int]Method{fds[0]: watchedMethod, fds[1]: watchedMethod, fds[2]: MethodDevNull, fds[3]: MethodDevNull}
	return tg, methods, epollFDOf(t, tg.pid)
}

func epollFDOf(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); l == "anon_inode:[eventpoll]" {
			fd, _ := strconv.Atoi(e.Name())
			return fd
		}
	}
	t.Fatalf("pid %d has no epoll fd", pid)
	return -1
}

func sigBlk(t *testing.T, pid int) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "SigBlk:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no SigBlk for pid %d", pid)
	return ""
}

// epollRegsOf reads the registrations of the target's epoll fd by tfd.
func epollRegsOf(t *testing.T, pid, efd int) map[int]epollReg {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, efd))
	if err != nil {
		t.Fatal(err)
	}
	regs, err := parseEpollRegs(efd, data)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]epollReg{}
	for _, r := range regs {
		out[r.tfd] = r
	}
	return out
}

func wantLink(m Method) string {
	switch m {
	case MethodHangup:
		return "socket:"
	case MethodQuiet:
		return "socket:"
	}
	return "/dev/null"
}

// checkHonest: an fd reported done is the replacement, any other still
// the PTY; every watched fd is still registered with its own data, under
// whatever it now is.
func checkHonest(t *testing.T, tg *target, rep Report, methods map[int]Method, efd int) {
	t.Helper()
	regs := epollRegsOf(t, tg.pid, efd)
	for _, r := range rep.FDs {
		link := tg.fdLink(r.FD)
		if r.Result == ResultDone && r.Method == MethodClose {
			if link != "closed" {
				t.Errorf("fd %d reported closed but is %q", r.FD, link)
			}
		} else if r.Result == ResultDone {
			if !strings.HasPrefix(link, wantLink(methods[r.FD])) || !strings.HasPrefix(r.Replacement, wantLink(methods[r.FD])) {
				t.Errorf("fd %d reported done (%+v) but is %q", r.FD, r, link)
			}
		} else if link != "/dev/ptmx" {
			t.Errorf("fd %d reported %s (%s) but is %q", r.FD, r.Result, r.Reason, link)
		}
		if r.Method == MethodClose && r.Result == ResultDone {
			if _, ok := regs[r.FD]; ok {
				t.Errorf("closed fd %d is still registered", r.FD)
			}
		} else if methods[r.FD].Pollable() {
			e, ok := regs[r.FD]
			if !ok || e.data != 0xfeed000000000000|uint64(r.FD) || e.events&unix.EPOLLIN == 0 {
				t.Errorf("fd %d lost its epoll registration: %+v (%v)", r.FD, e, ok)
			}
		} else if _, ok := regs[r.FD]; ok {
			t.Errorf("unwatched fd %d is registered now", r.FD)
		}
	}
}

// checkIntact: the target is alive, its mask is as before, its SIGSYS
// handler never ran, its callee-saved registers survived (filtered.c
// checks them on every read), and it still serves stdin.
func checkIntact(t *testing.T, tg *target, blk string) {
	t.Helper()
	tg.echo("intact")
	if got := sigBlk(t, tg.pid); got != blk {
		t.Errorf("SigBlk %s, was %s", got, blk)
	}
	if sigs, _ := tg.count(); sigs != 0 {
		t.Errorf("the target's SIGSYS handler ran %d times", sigs)
	}
	if s := threadsStopped(tg.pid); len(s) > 0 || tracerOf(tg.pid) != 0 {
		t.Errorf("left stopped %v or traced by %d", s, tracerOf(tg.pid))
	}
}

// TestSeccompFiltersSuspended: a filter that traps, kills, fails or hands
// to a supervisor any one of the injected calls changes nothing: the
// filter is suspended for the injecting thread, every fd is released with
// its method, and the target is intact.
func TestSeccompFiltersSuspended(t *testing.T) {
	for _, call := range injectedCalls {
		for _, action := range []string{"trap", "kill", "errno", "notif", "notif-killable"} {
			t.Run(call+"/"+action, func(t *testing.T) {
				tg, methods, efd := filteredTarget(t, call, action)
				blk := sigBlk(t, tg.pid)
				rep, err := Reclaim(context.Background(), Target{PID: tg.pid, StartTime: tg.startTime(), FDs: tg.readyFDs(),
					Methods: methods, CallTimeout: 2 * time.Second}, testLogger(t))
				if err != nil || rep.Done() != 4 || rep.Restore != RestoreDone {
					t.Fatalf("err %v, report %+v", err, rep)
				}
				checkHonest(t, tg, rep, methods, efd)
				checkIntact(t, tg, blk)
				tg.send("POLL")
				poll := tg.expect("POLL")
				if methods[tg.readyFDs()[0]] == MethodHangup {
					// Both watched fds now report a hang-up, with their own data.
					for _, fd := range tg.readyFDs()[:2] {
						if !strings.Contains(poll, fmt.Sprintf(":feed0000000000%02x", fd)) || !strings.HasPrefix(poll, "POLL 2 ") {
							t.Errorf("after hangup: %q", poll)
						}
					}
				} else if poll != "POLL 0" {
					t.Errorf("after quiet: %q", poll)
				}
			})
		}
	}
}

// TestSeccompFilterDefences drives the filters' traps, errors and
// supervisors through the injector with the suspension pretended (as on a
// kernel that ignored it): the trapped call's SIGSYS is withheld, a call
// that does not return is interrupted and the thread restored, one that
// cannot be interrupted is reported NOT restored, and every fd's result is
// what the kernel shows afterwards.
func TestSeccompFilterDefences(t *testing.T) {
	old := suspendSeccomp
	suspendSeccomp = func(int) error { return nil }
	t.Cleanup(func() { suspendSeccomp = old })
	for _, call := range injectedCalls {
		for _, action := range []string{"trap", "errno", "notif", "notif-killable"} {
			t.Run(call+"/"+action, func(t *testing.T) {
				tg, methods, efd := filteredTarget(t, call, action)
				blk := sigBlk(t, tg.pid)
				rep, err := Reclaim(context.Background(), Target{PID: tg.pid, StartTime: tg.startTime(), FDs: tg.readyFDs(),
					Methods: methods, CallTimeout: 300 * time.Millisecond, StopTimeout: 300 * time.Millisecond}, testLogger(t))
				t.Logf("err %v; restore %s; notes %v", err, rep.Restore, rep.Notes)
				for _, r := range rep.FDs {
					t.Logf("  fd %d %s %s %q %s", r.FD, r.Result, r.Method, r.Replacement, r.Reason)
				}
				if action == "notif-killable" {
					// The supervisor took the call and never answers: the
					// thread cannot be stopped, so it cannot be restored,
					// and the report must say so.
					if err == nil || !strings.Contains(err.Error(), "NOT restored") || rep.Restore != RestoreNotDone {
						t.Fatalf("a stuck call was not reported as such: err %v restore %q", err, rep.Restore)
					}
					// What it says about each fd is still the kernel's view,
					// including a registration the stuck call cost.
					regs := epollRegsOf(t, tg.pid, efd)
					for _, r := range rep.FDs {
						link := tg.fdLink(r.FD)
						if (r.Result == ResultDone) != strings.HasPrefix(link, wantLink(r.Method)) {
							t.Errorf("fd %d reported %s but is %q", r.FD, r.Result, link)
						}
						if _, ok := regs[r.FD]; methods[r.FD].Pollable() && !ok && !strings.Contains(r.Reason, "not registered") {
							t.Errorf("fd %d lost its registration and the report does not say so: %q", r.FD, r.Reason)
						}
					}
					return
				}
				if rep.Restore != RestoreDone {
					t.Fatalf("restore %q, err %v", rep.Restore, err)
				}
				checkHonest(t, tg, rep, methods, efd)
				checkIntact(t, tg, blk)
			})
		}
	}
}

// TestSeccompUnsuspendableRefused: when the filter cannot be suspended, a
// filtered target is left untouched: its filter could kill it.
func TestSeccompUnsuspendableRefused(t *testing.T) {
	old := suspendSeccomp
	suspendSeccomp = func(int) error { return unix.EPERM }
	t.Cleanup(func() { suspendSeccomp = old })
	tg, methods, efd := filteredTarget(t, "close", "kill")
	blk := sigBlk(t, tg.pid)
	rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: tg.readyFDs(), Methods: methods}, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "cannot be suspended") || rep.Restore != RestoreUntouched || rep.Done() != 0 {
		t.Fatalf("err %v report %+v", err, rep)
	}
	checkHonest(t, tg, rep, methods, efd)
	checkIntact(t, tg, blk)
}
