//go:build linux

package procfs

import (
	"context"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Processes that open PTYs and exit while scans run must never fail a scan
// or hide a process that stays.
func TestTakeWhileProcessesComeAndGo(t *testing.T) {
	bin := testproc.BuildC(t, "leak", testproc.LeakMasters)
	stay := testproc.Start(t, bin, "5")
	src := NewSource(zaptest.NewLogger(t))

	stop := make(chan struct{})
	var started atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Opens 20 masters and exits at once.
				cmd := exec.Command(bin, "20")
				cmd.Stdin = nil // EOF on stdin: it exits after "ready"
				if err := cmd.Run(); err == nil {
					started.Add(1)
				}
			}
		}()
	}
	deadline := time.Now().Add(3 * time.Second)
	scans := 0
	for time.Now().Before(deadline) || scans < 20 {
		snap, err := src.Take(context.Background(), snapshot.Options{})
		if err != nil {
			t.Fatalf("scan %d failed while processes churn: %v", scans, err)
		}
		p := snap.Process(stay.PID)
		if p == nil || len(p.PTYFDs) != 5 {
			t.Fatalf("scan %d lost the process that stays: %+v", scans, p)
		}
		scans++
	}
	close(stop)
	wg.Wait()
	if started.Load() < 10 {
		t.Fatalf("only %d short-lived leakers ran: the test did not churn", started.Load())
	}
	t.Logf("%d scans while %d leakers came and went", scans, started.Load())
}

func TestMastersArePairedExactly(t *testing.T) {
	p := testproc.Start(t, testproc.BuildC(t, "leak", testproc.LeakMasters), "3")
	snap, err := NewSource(zaptest.NewLogger(t)).Take(context.Background(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	proc := snap.Process(p.PID)
	if proc == nil || len(proc.PTYFDs) != 3 {
		t.Fatalf("want 3 PTY fds, got %+v", proc)
	}
	for _, f := range proc.PTYFDs {
		if f.Side != snapshot.Master || !f.Proven || f.PTY.Instance == snapshot.AnyInstance {
			t.Errorf("fd %d: %+v", f.FD, f)
		}
		if snap.PTYs[f.PTY] == nil || snap.PTYs[f.PTY].LastIO.IsZero() {
			t.Errorf("fd %d: no slave times for %+v", f.FD, f.PTY)
		}
	}
	if proc.UID != 0 || proc.Exe == "" {
		t.Errorf("details of a PTY holder: uid %d exe %q", proc.UID, proc.Exe)
	}
}
