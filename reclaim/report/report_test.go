package report

import (
	"fmt"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func TestFormatFDs(t *testing.T) {
	cases := map[string][]int{
		"3":           {3},
		"3-5 (3)":     {5, 3, 4},
		"3,5,7 (3)":   {3, 5, 7},
		"3-492 (490)": seq(3, 492),
		"200 fds":     everyOther(200),
		"0-2,9 (4)":   {0, 1, 2, 9},
	}
	for want, in := range cases {
		if got := FormatFDs(in); got != want {
			t.Errorf("FormatFDs(%v) = %q, want %q", in, got, want)
		}
	}
}

func seq(a, b int) []int {
	var s []int
	for i := a; i <= b; i++ {
		s = append(s, i)
	}
	return s
}

func everyOther(n int) []int {
	var s []int
	for i := 0; i < n; i++ {
		s = append(s, 3+2*i)
	}
	return s
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 59 * time.Second: "59s", 5 * time.Minute: "5m", 3 * time.Hour: "3h", 96 * time.Hour: "4d"} {
		if got := FormatDuration(d); got != want {
			t.Errorf("%s: %q want %q", d, got, want)
		}
	}
}

func TestSummaryCountsDistinctPTYsAndHolders(t *testing.T) {
	a := &snapshot.Process{PID: 1}
	b := &snapshot.Process{PID: 2}
	pty := func(p *snapshot.Process, idx int, st classify.State) plan.Item {
		return plan.Item{Finding: classify.Finding{Kind: classify.KindPTY, Process: p, PTY: snapshot.PTYID{Instance: 5, Index: idx}, State: st}}
	}
	items := []plan.Item{
		pty(a, 0, classify.Unattached), pty(a, 0, classify.Unattached), // master and slave of one PTY
		pty(b, 1, classify.HungUp), pty(b, 2, classify.Live),
		{Finding: classify.Finding{Kind: classify.KindOrphan, Process: b, State: classify.Orphan}},
	}
	got := Summary(snapshot.Pool{InUse: 495, Limit: 4096}, items)
	if want := "495 of 4096 PTYs in use; 2 leaked in 2 processes; 1 stuck child"; got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestDescribeFreedNamesPTYsAsThePlatformDoes(t *testing.T) {
	pts := func(i int) string { return fmt.Sprintf("pts/%d", i) }
	ttys := func(i int) string { return fmt.Sprintf("ttys%03d", i) }
	linux := []act.Freed{{Instance: 0x1a, Index: 3}, {Instance: 0x1a, Index: 4}}
	if got, want := DescribeFreed(linux, pts), "Freed 2 PTYs: pts/3, pts/4 (devpts 0:26)."; got != want {
		t.Errorf("linux: %q, want %q", got, want)
	}
	if got, want := DescribeFreed([]act.Freed{{Index: 7}}, ttys), "Freed 1 PTY: ttys007."; got != want {
		t.Errorf("macOS: %q, want %q", got, want)
	}
	if got := DescribeFreed(nil, pts); got != "Freed no PTY." {
		t.Errorf("none: %q", got)
	}
}
