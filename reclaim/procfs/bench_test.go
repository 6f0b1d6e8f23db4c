//go:build linux

package procfs

import (
	"context"
	"strconv"
	"testing"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// BenchmarkTake scans the whole machine with 20 holders of 50 leaked
// masters each added, and reports the cost per fd seen.
//
//	go test ./reclaim/procfs/ -run '^$' -bench Take -benchtime 20x
func BenchmarkTake(b *testing.B) {
	bin := testproc.BuildC(b, "leak", testproc.LeakMasters)
	for i := 0; i < 20; i++ {
		testproc.Start(b, bin, strconv.Itoa(50))
	}
	src := NewSource(zap.NewNop())
	fds := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		snap, err := src.Take(context.Background(), snapshot.Options{})
		if err != nil {
			b.Fatal(err)
		}
		fds = 0
		for _, p := range snap.Processes {
			fds += len(p.PTYFDs)
		}
	}
	if fds < 1000 {
		b.Fatalf("saw %d PTY fds, want at least 1000", fds)
	}
	b.ReportMetric(float64(fds), "ptyfds")
}
