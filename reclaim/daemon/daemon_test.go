package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/peer"
	"github.com/ptyreclaim/ptyreclaim/reclaim/pipeline"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// selection resolves a self-service request's target as release does.
func selection(snap *snapshot.Snapshot, r releaseRequest) (func(*snapshot.Process) bool, error) {
	return pipeline.Resolve(snap, targetOf(r))
}

func TestSelectionReachesOnlyTheCallersProcesses(t *testing.T) {
	snap := &snapshot.Snapshot{Processes: []*snapshot.Process{
		{PID: 10, UID: 1000, Comm: "node"},
		{PID: 11, UID: 1001, Comm: "node"},
		{PID: 12, UID: 1000, Comm: "bash", PPID: 1},
	}}
	if _, err := selection(snap, releaseRequest{caller: &peer.Caller{UID: 1000}, pids: []int{11}}); err == nil || !strings.Contains(err.Error(), "not your process") {
		t.Errorf("another user's pid: %v", err)
	}
	if _, err := selection(snap, releaseRequest{caller: &peer.Caller{UID: 1000}, pids: []int{99}}); err == nil || !strings.Contains(err.Error(), "no such process") {
		t.Errorf("missing pid: %v", err)
	}
	if _, err := selection(snap, releaseRequest{caller: &peer.Caller{UID: 1001}, names: []string{"bash"}}); err == nil {
		t.Error("a name only another user's process has must be refused")
	}
	sel, err := selection(snap, releaseRequest{caller: &peer.Caller{UID: 1000}, names: []string{"node"}})
	if err != nil {
		t.Fatal(err)
	}
	if !sel(snap.Processes[0]) || sel(snap.Processes[1]) || sel(snap.Processes[2]) {
		t.Error("by name: only the caller's own node")
	}
	all, _ := selection(snap, releaseRequest{caller: &peer.Caller{UID: 1000}, all: true})
	// An orphan's parent reaches plan as a bare pid: it is looked up.
	if !all(&snapshot.Process{PID: 12}) || all(&snapshot.Process{PID: 11}) {
		t.Error("--all: the caller's processes, looked up by pid")
	}
	root, _ := selection(snap, releaseRequest{caller: &peer.Caller{UID: 0, Root: true}, all: true})
	if !root(snap.Processes[1]) {
		t.Error("root owns every process")
	}
	// uid 0 from another user namespace is not root.
	nsRoot, _ := selection(snap, releaseRequest{caller: &peer.Caller{UID: 0}, all: true})
	if nsRoot(snap.Processes[1]) {
		t.Error("a uid-0 caller outside the daemon's user namespace owns nothing of others")
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "")
	if WatchdogInterval() != 0 {
		t.Error("no watchdog asked for")
	}
	t.Setenv("WATCHDOG_USEC", "60000000")
	t.Setenv("WATCHDOG_PID", "")
	if got := WatchdogInterval(); got != 30*time.Second {
		t.Errorf("half the period: %s", got)
	}
	t.Setenv("WATCHDOG_PID", "1")
	if WatchdogInterval() != 0 {
		t.Error("a watchdog meant for another process")
	}
}
