//go:build linux

package inject

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

// cpuTicks is a process's user+system time in clock ticks (1/100 s).
func cpuTicks(t *testing.T, pid int) (uint64, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	var u, s uint64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
	return u + s, f[0] != "Z" && f[0] != "X"
}

// until reads lines up to one starting with prefix and returns the others.
func (tg *target) until(prefix string, d time.Duration) (string, []string) {
	var other []string
	end := time.After(d)
	for {
		select {
		case line, ok := <-tg.lines:
			if !ok {
				return "", other
			}
			if strings.HasPrefix(line, prefix) {
				return line, other
			}
			other = append(other, line)
		case <-end:
			return "", other
		}
	}
}

// TestEventLoopReplacements measures what each method does to a libuv
// loop (uv_tty_t, as Node's tty.ReadStream) and a libev loop whose PTY
// masters are watched and re-armed every 20 ms, as a paused and resumed
// stream does: did it abort, spin (CPU time in the second after), close
// the fd itself through its own code, and does it still work. The figures
// decide the policy's defaults; the pollable methods must never harm.
func TestEventLoopReplacements(t *testing.T) {
	refuseUnpollable = false // measure the harm the refusal prevents
	t.Cleanup(func() { refuseUnpollable = true })
	for _, prog := range []string{"uvloop", "evloop"} {
		for _, m := range []Method{MethodDevNull, MethodClose, MethodHangup, MethodQuiet} {
			t.Run(prog+"/"+string(m), func(t *testing.T) {
				tg := startTarget(t, program(t, prog), "4")
				fds := tg.readyFDs()
				tg.echo("before")
				cpu0, _ := cpuTicks(t, tg.pid)
				rep, err := Reclaim(context.Background(), Target{PID: tg.pid, FDs: fds, Method: m}, testLogger(t))
				if err != nil {
					t.Fatalf("Reclaim: %v", err)
				}
				closed := ClosedByProgram(tg.pid, rep.FDs, 200*time.Millisecond)
				time.Sleep(time.Second) // the window CPU time is measured over
				cpu1, alive := cpuTicks(t, tg.pid)
				var status string
				var lines []string
				if alive {
					tg.send("COUNT")
					status, lines = tg.until("COUNT", 5*time.Second)
				} else {
					err := tg.cmd.Wait()
					status = fmt.Sprint(err)
					_, lines = tg.until("never", 100*time.Millisecond)
				}
				var first time.Duration = -1
				for _, d := range closed {
					if first < 0 || d < first {
						first = d
					}
				}
				t.Logf("MEASURE %s %s: done %d/4, alive %v (%s), CPU %.2f s in the next 1 s, closed by the program %d/4 (first after %v), output %q",
					prog, m, rep.Done(), alive, status, float64(cpu1-cpu0)/100, len(closed), first, lines)
				if !m.Pollable() {
					return
				}
				if rep.Done() != 4 || !alive || status == "" {
					t.Fatalf("%s harmed %s: done %d, alive %v, %s", m, prog, rep.Done(), alive, status)
				}
				if cpu1-cpu0 > 30 {
					t.Errorf("%s: %s spins: %.2f s CPU in 1 s", m, prog, float64(cpu1-cpu0)/100)
				}
				tg.echo("after")
				switch m {
				case MethodHangup:
					// The loop read EOF and closed every fd through its own
					// code (libuv's uv_close, libev's callback).
					if len(closed) != 4 {
						t.Errorf("the program closed %d of 4 hung-up fds", len(closed))
					}
				case MethodQuiet:
					if len(closed) != 0 || !strings.HasPrefix(status, "COUNT 0 0") {
						t.Errorf("quiet fds were closed: %v %s", closed, status)
					}
				}
			})
		}
	}
}

var _ = procfs.ParseStat
