package act

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// releasesAll is an actor whose every release is done.
type releasesAll struct{}

func (releasesAll) Reclaim(_ context.Context, _ *snapshot.Process, items []plan.Item, _ *zap.Logger) ([]Action, time.Duration) {
	out := make([]Action, len(items))
	for i, it := range items {
		out[i] = NewAction(it, Done, "")
	}
	return out, time.Millisecond
}

func (releasesAll) Kill(_ context.Context, it plan.Item, _ *zap.Logger) Action {
	return NewAction(it, Done, "")
}

// With processes the rescan cannot read, a PTY is freed only on the
// kernel's word: its slave closed everywhere and no session at the scan,
// and its slave node gone after. Each missing fact keeps it "not freed".
func TestConfirmWithUnreadableProcesses(t *testing.T) {
	id := snapshot.PTYID{Instance: 22, Index: 5}
	holder := &snapshot.Process{PID: 100, Comm: "leak"}
	item := plan.Item{Finding: classify.Finding{Kind: classify.KindPTY, Process: holder, FD: 4, PTY: id, Side: snapshot.Master},
		Verdict: plan.Reclaim}
	closed := snapshot.PTY{ID: id, KernelChecked: true, SlaveClosed: true}
	tests := []struct {
		name  string
		facts *snapshot.PTY
		gone  map[snapshot.PTYID]bool
		freed bool
		why   string
	}{
		{"every fact", &closed, map[snapshot.PTYID]bool{id: true}, true, ""},
		{"node still there (a process we cannot read holds the master)", &closed, map[snapshot.PTYID]bool{id: false}, false, "slave node is still there"},
		{"node not known", &closed, nil, false, "could not be read"},
		{"slave not closed at the scan", &snapshot.PTY{ID: id, KernelChecked: true}, map[snapshot.PTYID]bool{id: true}, false, "slave was closed"},
		{"a session", &snapshot.PTY{ID: id, KernelChecked: true, SlaveClosed: true, Session: 7}, map[snapshot.PTYID]bool{id: true}, false, "slave was closed"},
		{"kernel not asked", &snapshot.PTY{ID: id}, map[snapshot.PTYID]bool{id: true}, false, "not read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []snapshot.PTYNode
			e := &Executor{Log: zaptest.NewLogger(t), Actor: releasesAll{},
				Scan: &snapshot.Snapshot{PTYs: map[snapshot.PTYID]*snapshot.PTY{id: tt.facts}},
				Rescan: func(_ context.Context, nodes []snapshot.PTYNode) (*snapshot.Snapshot, error) {
					asked = nodes
					return &snapshot.Snapshot{Unreadable: 1, NodesGone: tt.gone}, nil
				}}
			res := e.Execute(context.Background(), []plan.Item{item})
			if len(asked) != 1 || asked[0] != (snapshot.PTYNode{Holder: 100, PTY: id}) {
				t.Errorf("nodes asked: %+v", asked)
			}
			a := res.Actions[0]
			if tt.freed {
				if a.Result != Done || len(res.Freed) != 1 {
					t.Fatalf("want done and freed: %+v %+v", a, res.Freed)
				}
				return
			}
			if a.Result != Failed || len(res.Freed) != 0 || !strings.Contains(a.Reason, tt.why) {
				t.Fatalf("want failed (%q): %+v %+v", tt.why, a, res.Freed)
			}
		})
	}
	t.Run("a readable holder still wins", func(t *testing.T) {
		e := &Executor{Log: zaptest.NewLogger(t), Actor: releasesAll{},
			Scan: &snapshot.Snapshot{PTYs: map[snapshot.PTYID]*snapshot.PTY{id: &closed}},
			Rescan: func(context.Context, []snapshot.PTYNode) (*snapshot.Snapshot, error) {
				return &snapshot.Snapshot{Unreadable: 1, NodesGone: map[snapshot.PTYID]bool{id: true},
					Processes: []*snapshot.Process{{PID: 101, Comm: "child", PTYFDs: []snapshot.PTYFD{{FD: 9, PTY: id, Side: snapshot.Master}}}}}, nil
			}}
		res := e.Execute(context.Background(), []plan.Item{item})
		if a := res.Actions[0]; a.Result != Failed || !strings.Contains(a.Reason, "pid 101") {
			t.Fatalf("%+v", a)
		}
	})
}
