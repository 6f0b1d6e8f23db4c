//go:build linux

package inject

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// TestFrozenTime records how long a whole target stays frozen for 100 and
// 490 fds (the size of the seed report), single- and multi-threaded. It
// asserts nothing about time: the figures are for SECURITY.md.
func TestFrozenTime(t *testing.T) {
	for _, c := range []struct {
		fds  int
		args []string
	}{
		{100, nil},
		{490, nil},
		{100, []string{"-S", "2", "-L", "4"}},
	} {
		args := append([]string{"-m", fmt.Sprint(c.fds)}, c.args...)
		tg := startTarget(t, program(t, "target"), args...)
		before := testproc.PTYCount(t)
		rep := reclaim(t, tg, tg.readyFDs(), MethodDevNull)
		if rep.Done() != c.fds {
			t.Fatalf("%v: done %d", args, rep.Done())
		}
		t.Logf("FROZEN fds=%d threads=%d frozen=%v pty/nr %d -> %d", c.fds, rep.Threads, rep.Frozen, before, testproc.PTYCount(t))
		tg.echo("measured")
	}
}

// BenchmarkReclaim reports the frozen time per release of 100 and 490
// masters as frozen-µs/op, for the comparison script.
func BenchmarkReclaim(b *testing.B) {
	for _, n := range []int{100, 490} {
		b.Run(fmt.Sprintf("fds=%d", n), func(b *testing.B) {
			var frozen time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				tg := startTarget(b, program(b, "target"), "-m", fmt.Sprint(n))
				b.StartTimer()
				rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: tg.readyFDs()}, zap.NewNop())
				b.StopTimer()
				if err != nil || rep.Done() != n {
					b.Fatalf("%v %+v", err, rep)
				}
				frozen += rep.Frozen
				tg.cmd.Process.Kill()
				tg.cmd.Wait()
				b.StartTimer()
			}
			b.ReportMetric(float64(frozen.Microseconds())/float64(b.N), "frozen-µs/op")
		})
	}
}

func TestReclaimRecheckAndCancel(t *testing.T) {
	tg := startTarget(t, program(t, "target"), "-m", "4")
	fds := tg.readyFDs()
	veto := errors.New("a new process opened the slave")
	rep, err := Reclaim(context.Background(), Target{
		PID: tg.pid, FDs: fds,
		Recheck: func(fd, _ int) error {
			if fd == fds[1] {
				return veto
			}
			return nil
		},
	}, testLogger(t))
	if err != nil || rep.Done() != 3 {
		t.Fatalf("%v %+v", err, rep)
	}
	if r := rep.FDs[1]; r.Result != ResultSkipped || r.Reason != veto.Error() || tg.fdLink(r.FD) != "/dev/ptmx" {
		t.Errorf("vetoed fd: %+v now %q", r, tg.fdLink(r.FD))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Reclaim(ctx, Target{PID: tg.pid, FDs: fds[1:2]}, testLogger(t)); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if tg.fdLink(fds[1]) != "/dev/ptmx" {
		t.Error("cancelled release changed the fd")
	}
	tg.echo("rechecked")
}

// BenchmarkReclaimWatched compares the freeze for 490 masters watched in
// an epoll set and released with hangup (epoll DEL, dup3, epoll ADD per
// fd, after one socketpair and shutdown) with 490 unwatched ones released
// with devnull, in the same program (filtered.c, no filter), as
// frozen-µs/op.
func BenchmarkReclaimWatched(b *testing.B) {
	for _, c := range []struct {
		name   string
		args   []string
		method Method
	}{
		{"unwatched-devnull-490", []string{"-w", "0", "-u", "490"}, MethodDevNull},
		{"watched-hangup-490", []string{"-w", "490", "-u", "0"}, MethodHangup},
		{"watched-quiet-490", []string{"-w", "490", "-u", "0"}, MethodQuiet},
	} {
		b.Run(c.name, func(b *testing.B) {
			var frozen time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				tg := startTarget(b, program(b, "filtered"), c.args...)
				b.StartTimer()
				rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: tg.readyFDs(), Method: c.method}, zap.NewNop())
				b.StopTimer()
				if err != nil || rep.Done() != 490 {
					b.Fatalf("%v done %d %+v", err, rep.Done(), rep.Notes)
				}
				frozen += rep.Frozen
				tg.cmd.Process.Kill()
				tg.cmd.Wait()
				b.StartTimer()
			}
			b.ReportMetric(float64(frozen.Microseconds())/float64(b.N), "frozen-µs/op")
		})
	}
}
