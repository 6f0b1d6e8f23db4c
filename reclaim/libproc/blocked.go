package libproc

import (
	"sort"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// PipeEnd is one pipe fd of a process.
type PipeEnd struct {
	FD   int
	Pipe PipeFD
}

// BlockProbe is what the stuck-child proof needs to know about one process.
type BlockProbe struct {
	PID int
	// Candidate is true when the process may be reported (in scope, old
	// enough, not the helper itself). Non-candidates still count as pipe
	// holders.
	Candidate bool
	Threads   int
	// ThreadState is pth_run_state of its only thread, 0 when unknown.
	ThreadState int32
	// SigCatch is p_sigcatch from kinfo_proc: the signals it has handlers
	// for. The per-thread blocked mask is not visible, so any caught signal
	// counts as a handler that could write to the pipe.
	SigCatch uint32
	// Pipes holds every pipe fd of the process.
	Pipes []PipeEnd
}

// waitingReadEnd returns the single read end the process could be sleeping
// on: a pipe it reads whose PIPE_WANTR is set. macOS cannot tell which fd a
// thread sleeps on, but pipe_read sets PIPE_WANTR on the read side right
// before msleep("piperd") and any write or close clears it; an EINTR could
// leave it stale, which needs a caught signal (SignalHandlers then says so).
// Two such pipes make it ambiguous, so none is returned.
func waitingReadEnd(p *BlockProbe) (PipeEnd, bool) {
	var found PipeEnd
	ok := false
	for _, e := range p.Pipes {
		if !e.Pipe.Reads() || !e.Pipe.ReaderWaiting() || e.Pipe.Handle == 0 {
			continue
		}
		if ok && found.Pipe.Handle != e.Pipe.Handle {
			return PipeEnd{}, false
		}
		if !ok || e.FD < found.FD {
			found, ok = e, true
		}
	}
	return found, ok
}

// FindBlocked proves which processes are stuck forever in read() on a pipe.
//
// A process is blocked when it is single-threaded, its thread is waiting, it
// is the only holder of exactly one pipe read end with a sleeping reader, and
// every process holding that pipe's write end is itself blocked the same way
// (itself included: the seed-002 child holds its own write end). The last
// condition is a fixpoint over the candidates, so a chain of stuck processes
// feeding each other is found and any live writer clears the whole chain.
//
// It returns the proven processes and, for their pipes (keyed by the read
// end's handle, macOS pipes having no inode), the pids holding write ends.
// When complete is false (some process's fds were unreadable), a hidden
// writer could exist and nothing is proven.
func FindBlocked(probes []*BlockProbe, complete bool) (map[int]*snapshot.BlockedRead, map[uint64][]int) {
	blocked := make(map[int]*snapshot.BlockedRead)
	writers := make(map[uint64][]int)
	if !complete {
		return blocked, writers
	}

	readers := make(map[uint64]map[int]bool)  // read-end handle -> pids
	writerOf := make(map[uint64]map[int]bool) // read-end handle -> pids with its write end
	for _, p := range probes {
		for _, e := range p.Pipes {
			if e.Pipe.Reads() && e.Pipe.Handle != 0 {
				addPID(readers, e.Pipe.Handle, p.PID)
			}
			// A write end's peer is the read end; both handles must agree
			// so that a closed peer (hashed NULL) never pairs.
			if e.Pipe.Writes() && e.Pipe.PeerHandle != 0 {
				addPID(writerOf, e.Pipe.PeerHandle, p.PID)
			}
		}
	}

	type local struct {
		end     PipeEnd
		sig     bool
		writers []int
	}
	cand := make(map[int]*local)
	for _, p := range probes {
		if !p.Candidate || p.Threads != 1 || p.ThreadState != ThreadWaiting {
			continue
		}
		end, ok := waitingReadEnd(p)
		if !ok {
			continue
		}
		// Another reader could be the sleeper.
		if r := readers[end.Pipe.Handle]; len(r) != 1 || !r[p.PID] {
			continue
		}
		w := sortedPIDs(writerOf[end.Pipe.Handle])
		// No visible writer: read would see EOF, or the write end is out of
		// sight (in flight over a socket, in a fileport). Not provable.
		if len(w) == 0 || !pairs(end, probes, w) {
			continue
		}
		cand[p.PID] = &local{end: end, sig: p.SigCatch != 0, writers: w}
	}

	for changed := true; changed; {
		changed = false
		for pid, c := range cand {
			for _, w := range c.writers {
				if cand[w] == nil {
					delete(cand, pid)
					changed = true
					break
				}
			}
		}
	}

	for pid, c := range cand {
		blocked[pid] = &snapshot.BlockedRead{
			FD:             c.end.FD,
			Pipe:           c.end.Pipe.Handle,
			SignalHandlers: c.sig,
		}
		writers[c.end.Pipe.Handle] = c.writers
	}
	return blocked, writers
}

// pairs checks that every writer's write end names the read end as its peer
// and is itself the read end's peer: both directions of pipe_peer agree.
func pairs(end PipeEnd, probes []*BlockProbe, writers []int) bool {
	want := make(map[int]bool, len(writers))
	for _, w := range writers {
		want[w] = true
	}
	for _, p := range probes {
		if !want[p.PID] {
			continue
		}
		for _, e := range p.Pipes {
			if e.Pipe.Writes() && e.Pipe.PeerHandle == end.Pipe.Handle && e.Pipe.Handle != end.Pipe.PeerHandle {
				return false
			}
		}
	}
	return true
}

func addPID(m map[uint64]map[int]bool, key uint64, pid int) {
	if m[key] == nil {
		m[key] = make(map[int]bool)
	}
	m[key][pid] = true
}

func sortedPIDs(set map[int]bool) []int {
	out := make([]int, 0, len(set))
	for pid := range set {
		out = append(out, pid)
	}
	sort.Ints(out)
	return out
}
