package report

import (
	"fmt"
	"strings"
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

func TestOwnClosesPerPTY(t *testing.T) {
	fd := func(n int) *int { return &n }
	secs := func(s float64) *float64 { return &s }
	name := func(i int) string { return fmt.Sprintf("pts/%d", i) }
	actions := []act.Action{
		{Kind: "pty", PID: 42, FD: fd(13), Index: fd(5), Method: "hangup", Result: act.Done, ClosedByProgramAfter: secs(0.003)},
		{Kind: "pty", PID: 42, FD: fd(14), Index: fd(5), Method: "hangup", Result: act.Done, ClosedByProgramAfter: secs(0.004)},
		{Kind: "pty", PID: 42, FD: fd(16), Index: fd(6), Method: "hangup", Result: act.Done},
		{Kind: "pty", PID: 42, FD: fd(17), Index: fd(7), Method: "hangup", Result: act.Done, ClosedByProgramAfter: secs(0.0004)},
		{Kind: "pty", PID: 42, FD: fd(18), Index: fd(7), Method: "hangup", Result: act.Done},
		{Kind: "pty", PID: 43, FD: fd(9), Index: fd(8), Method: "quiet", Result: act.Done},
		{Kind: "pty", PID: 43, FD: fd(10), Index: fd(9), Method: "devnull", Result: act.Done},
		{Kind: "pty", PID: 43, FD: fd(11), Index: fd(10), Method: "hangup", Result: act.Failed, Reason: "x"},
	}
	got := OwnCloses(actions, name)
	want := []string{
		"pid 42 pts/5 (hangup, fds 13, 14): the program closed it itself, 4 ms after the release",
		"pid 42 pts/6 (hangup, fd 16): the program had not closed it within 0.2 s (a paused stream closes when the program resumes it)",
		"pid 42 pts/7 (hangup, fds 17, 18): the program closed fd 17 itself (before the follow-up check began), not yet the others within 0.2 s",
		"pid 43 pts/8 (quiet, fd 9): the program keeps it: a quiet replacement never wakes its loop",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var b strings.Builder
	WriteReleaseTable(&b, Release{Actions: actions}, name)
	if !strings.Contains(b.String(), "\n  "+want[0]+"\n") {
		t.Errorf("the table does not carry the own-close line:\n%s", b.String())
	}
}
