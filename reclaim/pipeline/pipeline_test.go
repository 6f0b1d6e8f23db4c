package pipeline

import (
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"

	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func TestSelectByPIDAndName(t *testing.T) {
	node := &snapshot.Process{PID: 10, Comm: "MainThread", Exe: "/usr/bin/node"}
	bash := &snapshot.Process{PID: 11, Comm: "bash", Exe: "/usr/bin/bash"}
	if Select(nil, nil) != nil {
		t.Error("nothing named must mean no selection (policy decides)")
	}
	sel := Select([]int{11}, []string{"node"})
	if !sel(node) || !sel(bash) || sel(&snapshot.Process{PID: 12, Comm: "node-ish"}) {
		t.Error("select by pid, comm or executable base name")
	}
}

func TestFilterKeepsLeaksOfTheNamedAndTheirOrphans(t *testing.T) {
	parent := &snapshot.Process{PID: 10}
	other := &snapshot.Process{PID: 20}
	child := &snapshot.Process{PID: 11, PPID: 10}
	fs := []classify.Finding{
		{Kind: classify.KindPTY, Process: parent, State: classify.Unattached},
		{Kind: classify.KindPTY, Process: parent, State: classify.Live},
		{Kind: classify.KindPTY, Process: other, State: classify.HungUp},
		{Kind: classify.KindOrphan, Process: child, State: classify.Orphan},
	}
	if got := filter(fs, nil, false); len(got) != 3 {
		t.Errorf("no selection: %d findings, want the 3 leaks", len(got))
	}
	if got := filter(fs, nil, true); len(got) != 4 {
		t.Errorf("all: %d findings, want 4", len(got))
	}
	got := filter(fs, Select([]int{10}, nil), false)
	if len(got) != 2 || got[0].Process != parent || got[1].Process != child {
		t.Errorf("named parent: %+v", got)
	}
}

func TestIdleBar(t *testing.T) {
	pol := policy.Default()
	small := &snapshot.Process{PID: 1}
	big := &snapshot.Process{PID: 2}
	for i := 0; i < pol.Holders.ReclaimAt; i++ {
		big.PTYFDs = append(big.PTYFDs, snapshot.PTYFD{FD: i + 3, PTY: snapshot.PTYID{Index: i}})
	}
	calm := &snapshot.Snapshot{Pool: snapshot.Pool{InUse: 10, Limit: 100}, Processes: []*snapshot.Process{small, big}}
	if got := IdleBar(calm, pol, nil)(small); got != pol.Defaults.MinIdle {
		t.Errorf("default: %s", got)
	}
	flag := 2 * time.Hour
	if got := IdleBar(calm, pol, &flag)(small); got != flag {
		t.Errorf("flag: %s", got)
	}
	if got := IdleBar(calm, pol, nil)(big); got != 0 {
		t.Errorf("holder over reclaim_at: %s", got)
	}
	critical := &snapshot.Snapshot{Pool: snapshot.Pool{InUse: 99, Limit: 100}, Processes: []*snapshot.Process{small, big}}
	if got := IdleBar(critical, pol, nil)(small); got != pol.Pressure.MinIdle {
		t.Errorf("critical pressure: %s", got)
	}
}
