package libproc

import (
	"reflect"
	"testing"
)

// pipeEnd decodes a pipe_fdinfo fixture, so the proof runs on decoder output.
func pipeEnd(t *testing.T, fd int, flags uint32, handle, peer uint64, status uint32) PipeEnd {
	t.Helper()
	p, err := DecodePipeFDInfo(pipeFixture(flags, handle, peer, status))
	if err != nil {
		t.Fatal(err)
	}
	return PipeEnd{FD: fd, Pipe: p}
}

// One pipe: read end handle 0xA1 (peer 0xB1), write end 0xB1 (peer 0xA1).
const (
	readEnd  = 0xA1
	writeEnd = 0xB1
)

// stuck is a single-threaded waiting candidate.
func stuck(pid int, pipes ...PipeEnd) *BlockProbe {
	return &BlockProbe{PID: pid, Candidate: true, Threads: 1, ThreadState: ThreadWaiting, Pipes: pipes}
}

// Seed 002: a forked child blocks in read() on a pipe whose write end it
// holds itself; nobody else holds either end.
func TestBlockedSelfWriter(t *testing.T) {
	child := stuck(100,
		pipeEnd(t, 3, openRead, readEnd, writeEnd, pipeWantR),
		pipeEnd(t, 4, openWrite, writeEnd, readEnd, 0))
	blocked, writers := FindBlocked([]*BlockProbe{child, {PID: 1}}, true)
	b := blocked[100]
	if b == nil {
		t.Fatal("child not proven blocked")
	}
	if b.FD != 3 || b.Pipe != readEnd || b.SignalHandlers {
		t.Errorf("got %+v", b)
	}
	if !reflect.DeepEqual(writers, map[uint64][]int{readEnd: {100}}) {
		t.Errorf("writers %v", writers)
	}
}

func TestBlockedSignalHandlers(t *testing.T) {
	child := stuck(100,
		pipeEnd(t, 3, openRead, readEnd, writeEnd, pipeWantR),
		pipeEnd(t, 4, openWrite, writeEnd, readEnd, 0))
	child.SigCatch = 1 << 14 // SIGALRM handler
	blocked, _ := FindBlocked([]*BlockProbe{child}, true)
	if b := blocked[100]; b == nil || !b.SignalHandlers {
		t.Errorf("got %+v, want blocked with SignalHandlers", b)
	}
}

func TestNotBlocked(t *testing.T) {
	waitR := func(fd int) PipeEnd { return pipeEnd(t, fd, openRead, readEnd, writeEnd, pipeWantR) }
	ownW := func(fd int) PipeEnd { return pipeEnd(t, fd, openWrite, writeEnd, readEnd, 0) }
	cases := []struct {
		name     string
		probes   []*BlockProbe
		complete bool
	}{
		{"live parent holds the write end", []*BlockProbe{
			stuck(100, waitR(3), ownW(4)),
			{PID: 50, Threads: 4, Pipes: []PipeEnd{ownW(7)}},
		}, true},
		{"no reader asleep (PIPE_WANTR clear)", []*BlockProbe{
			stuck(100, pipeEnd(t, 3, openRead, readEnd, writeEnd, 0), ownW(4)),
		}, true},
		{"another process also holds the read end", []*BlockProbe{
			stuck(100, waitR(3), ownW(4)),
			stuck(101, waitR(3)),
		}, true},
		{"two pipes with sleeping readers: ambiguous", []*BlockProbe{
			stuck(100, waitR(3), ownW(4),
				pipeEnd(t, 5, openRead, 0xA2, 0xB2, pipeWantR), pipeEnd(t, 6, openWrite, 0xB2, 0xA2, 0)),
		}, true},
		{"multithreaded", []*BlockProbe{
			{PID: 100, Candidate: true, Threads: 2, ThreadState: ThreadWaiting, Pipes: []PipeEnd{waitR(3), ownW(4)}},
		}, true},
		{"thread running", []*BlockProbe{
			{PID: 100, Candidate: true, Threads: 1, ThreadState: ThreadRunning, Pipes: []PipeEnd{waitR(3), ownW(4)}},
		}, true},
		{"not a candidate (too young or out of scope)", []*BlockProbe{
			{PID: 100, Threads: 1, ThreadState: ThreadWaiting, Pipes: []PipeEnd{waitR(3), ownW(4)}},
		}, true},
		{"no visible writer", []*BlockProbe{
			stuck(100, waitR(3)),
		}, true},
		{"some process unreadable", []*BlockProbe{
			stuck(100, waitR(3), ownW(4)),
		}, false},
		{"writer's handles disagree", []*BlockProbe{
			stuck(100, waitR(3), pipeEnd(t, 4, openWrite, 0xC3, readEnd, 0)),
		}, true},
	}
	for _, c := range cases {
		blocked, writers := FindBlocked(c.probes, c.complete)
		if len(blocked) != 0 || len(writers) != 0 {
			t.Errorf("%s: got blocked %v writers %v, want none", c.name, blocked, writers)
		}
	}
}

// Two stuck processes feeding each other: each holds the other's write end.
// Both are proven; adding a live writer to either clears the whole chain.
func TestBlockedChain(t *testing.T) {
	mk := func() []*BlockProbe {
		return []*BlockProbe{
			stuck(200, pipeEnd(t, 3, openRead, 0xA1, 0xB1, pipeWantR), pipeEnd(t, 4, openWrite, 0xB2, 0xA2, 0)),
			stuck(201, pipeEnd(t, 3, openRead, 0xA2, 0xB2, pipeWantR), pipeEnd(t, 4, openWrite, 0xB1, 0xA1, 0)),
		}
	}
	blocked, writers := FindBlocked(mk(), true)
	if blocked[200] == nil || blocked[201] == nil {
		t.Fatalf("chain not proven: %v", blocked)
	}
	if !reflect.DeepEqual(writers[0xA1], []int{201}) || !reflect.DeepEqual(writers[0xA2], []int{200}) {
		t.Errorf("writers %v", writers)
	}

	probes := append(mk(), &BlockProbe{PID: 300, Threads: 3, Pipes: []PipeEnd{pipeEnd(t, 9, openWrite, 0xB2, 0xA2, 0)}})
	if blocked, _ := FindBlocked(probes, true); len(blocked) != 0 {
		t.Errorf("live writer 300 feeds 200, which feeds 201: got %v, want none", blocked)
	}
}

func TestBlockedLowestFD(t *testing.T) {
	child := stuck(100,
		pipeEnd(t, 9, openRead, readEnd, writeEnd, pipeWantR),
		pipeEnd(t, 0, openRead, readEnd, writeEnd, pipeWantR), // dup2'ed onto stdin
		pipeEnd(t, 4, openWrite, writeEnd, readEnd, 0))
	blocked, _ := FindBlocked([]*BlockProbe{child}, true)
	if b := blocked[100]; b == nil || b.FD != 0 {
		t.Errorf("got %+v, want fd 0", b)
	}
}
