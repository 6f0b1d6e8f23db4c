//go:build linux

package procfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Source reads snapshots from /proc.
type Source struct {
	log     *zap.Logger
	workers int
	// StepTimeout bounds each step of one process's scan (a directory
	// batch, one fd's proof and copy, one file read). A worker that
	// exceeds it is abandoned and the process reported unreadable, so one
	// hostile process cannot stall the scan of the rest of the machine.
	StepTimeout time.Duration

	// stuck holds the pids whose abandoned worker has not come back: they
	// are not scanned again until it does, so a process that stalls every
	// scan costs one stuck thread, not one per scan.
	mu    sync.Mutex
	stuck map[int]time.Time
}

// DefaultStepTimeout is Source.StepTimeout unless set.
const DefaultStepTimeout = 5 * time.Second

// NewSource returns a Source that logs to log.
func NewSource(log *zap.Logger) *Source {
	return &Source{log: log, workers: runtime.NumCPU(), StepTimeout: DefaultStepTimeout, stuck: map[int]time.Time{}}
}

var _ snapshot.Source = (*Source)(nil)

// Take scans every process. It never fails because a process or fd vanished;
// it fails only when /proc itself cannot be read.
func (s *Source) Take(ctx context.Context, opts snapshot.Options) (*snapshot.Snapshot, error) {
	clock, err := readClock()
	if err != nil {
		return nil, err
	}
	snap := &snapshot.Snapshot{
		Taken:       time.Now(),
		Self:        os.Getpid(),
		PTYs:        map[snapshot.PTYID]*snapshot.PTY{},
		PipeWriters: map[uint64][]int{},
	}
	if snap.Pool, err = ReadPool(); err != nil {
		return nil, err
	}
	pids, err := listPIDs()
	if err != nil {
		return nil, err
	}

	mounts := NewMounts()
	scans, timedOut := s.scanAll(ctx, pids, clock, opts.OrphanMinAge, mounts)
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	for _, sc := range scans {
		if sc == nil {
			continue
		}
		snap.Processes = append(snap.Processes, sc.proc)
		if sc.proc.Unreadable {
			snap.Unreadable++
		}
		for _, why := range sc.skipped {
			s.log.Info("fd not examined", zap.Int("pid", sc.proc.PID), zap.String("comm", sc.proc.Comm), zap.String("reason", why))
		}
	}
	sort.Slice(snap.Processes, func(i, j int) bool { return snap.Processes[i].PID < snap.Processes[j].PID })
	// A process whose scan timed out may hold anything: it counts as
	// unreadable, which keeps every PTY it could hold from being judged
	// unused.
	for _, t := range timedOut {
		snap.Unreadable++
		snap.Notes = append(snap.Notes, fmt.Sprintf("pid %d: unreadable: timed out (a step of its scan took over %s)", t.pid, s.StepTimeout))
		s.log.Warn("process unreadable: timed out", zap.Int("pid", t.pid), zap.Duration("step_timeout", s.StepTimeout),
			zap.Bool("still_stuck_from_earlier", t.earlier))
	}

	join(snap, scans, newLiveKernel(mounts))
	if len(opts.Nodes) > 0 {
		snap.NodesGone = nodesGone(opts.Nodes, mounts)
	}

	if snap.Unreadable > 0 && os.Geteuid() != 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf(
			"not root: the fds of %d processes could not be read; run as root to see every PTY holder", snap.Unreadable))
	}
	return snap, nil
}

// timedOut is a process whose scan was abandoned.
type timedOut struct {
	pid     int
	earlier bool // abandoned by an earlier scan, not yet back
}

// job is what one worker is doing: the index of its process and when it
// last made progress (unix nanoseconds).
type job struct {
	i    int
	beat atomic.Int64
}

// worker is one scanning goroutine, locked to its own OS thread.
type worker struct {
	cur       atomic.Pointer[job]
	abandoned atomic.Bool
}

type scanResult struct {
	i  int // -1: the worker ended early and wants a replacement
	sc *procScan
}

// scanAll scans processes on a few workers. Almost all the cost is system
// time in readlink, which scales with cores.
//
// Each worker runs on an OS thread with a private fd table, where it takes
// its copies of other processes' fds: a copy that proves hostile is then
// dropped with everything else that thread holds, and if its close sleeps
// forever it holds nothing the rest of the process needs. A watchdog
// abandons a worker whose step exceeds StepTimeout and starts another; the
// abandoned one shares no lock and no buffer with anyone, and whatever it
// returns is dropped.
func (s *Source) scanAll(ctx context.Context, pids []int, clock clock, orphanMinAge time.Duration, mounts *Mounts) ([]*procScan, []timedOut) {
	out := make([]*procScan, len(pids))
	decided := make([]bool, len(pids))
	remaining := len(pids)
	var late []timedOut
	s.mu.Lock()
	for i, pid := range pids {
		if _, ok := s.stuck[pid]; ok {
			decided[i] = true
			remaining--
			late = append(late, timedOut{pid: pid, earlier: true})
		}
	}
	s.mu.Unlock()

	var next atomic.Int64
	results := make(chan scanResult, 2*len(pids)+8) // a send never blocks, even after we return
	var workers []*worker
	start := func() {
		w := &worker{}
		workers = append(workers, w)
		go s.work(w, &next, pids, clock, orphanMinAge, mounts, results)
	}
	for range min(s.workers, max(remaining, 1)) {
		start()
	}
	timeout := s.StepTimeout
	if timeout <= 0 {
		timeout = DefaultStepTimeout
	}
	tick := time.NewTicker(max(timeout/4, time.Millisecond))
	defer tick.Stop()
	for remaining > 0 {
		select {
		case r := <-results:
			if r.i < 0 {
				s.log.Warn("an fd changed into a hostile file between its proof and its copy; the copy is dropped on a thread that holds nothing else")
				start()
				continue
			}
			if !decided[r.i] {
				decided[r.i], out[r.i] = true, r.sc
				remaining--
			}
		case now := <-tick.C:
			for _, w := range workers {
				j := w.cur.Load()
				if w.abandoned.Load() || j == nil || decided[j.i] || now.UnixNano()-j.beat.Load() < int64(timeout) {
					continue
				}
				// Registered before the worker can see it is abandoned, so
				// that its coming back always finds the entry to remove.
				s.mu.Lock()
				s.stuck[pids[j.i]] = now
				s.mu.Unlock()
				w.abandoned.Store(true)
				decided[j.i] = true
				remaining--
				late = append(late, timedOut{pid: pids[j.i]})
				start()
			}
		case <-ctx.Done():
			return out, late
		}
	}
	return out, late
}

// work is one worker: it takes the next process until none is left, or
// until it was abandoned or must dispose of a hostile copy.
func (s *Source) work(w *worker, next *atomic.Int64, pids []int, clock clock, orphanMinAge time.Duration,
	mounts *Mounts, results chan<- scanResult) {
	// Never unlocked: the thread, and its private fd table, end with this
	// goroutine.
	runtime.LockOSThread()
	// No logging from here (see PrivateFDTable): what there is to say goes
	// back with the results.
	err := PrivateFDTable()
	if errors.Is(err, ErrMainThread) {
		runtime.UnlockOSThread()
		go s.work(w, next, pids, clock, orphanMinAge, mounts, results)
		return
	}
	sc := newScanner(clock, orphanMinAge, zap.NewNop())
	sc.mounts = mounts
	sc.private = err == nil
	for {
		i := int(next.Add(1) - 1)
		if i >= len(pids) {
			return
		}
		j := &job{i: i}
		j.beat.Store(time.Now().UnixNano())
		sc.job = j
		w.cur.Store(j)
		r := sc.scan(pids[i])
		w.cur.Store(nil)
		if w.abandoned.Load() {
			// Back after the watchdog gave up on us: the process may be
			// scanned again by later scans.
			s.mu.Lock()
			delete(s.stuck, pids[i])
			s.mu.Unlock()
			return
		}
		results <- scanResult{i: i, sc: r}
		if sc.hostile >= 0 {
			results <- scanResult{i: -1}
			DisposeHostile(sc.hostile)
			return
		}
	}
}

// Pool reads the PTY pool.
func (s *Source) Pool() (snapshot.Pool, error) { return ReadPool() }

// ReadPool reads the number of PTYs in use and the limit.
func ReadPool() (snapshot.Pool, error) {
	nr, err := readIntFile("/proc/sys/kernel/pty/nr")
	if err != nil {
		return snapshot.Pool{}, err
	}
	max, err := readIntFile("/proc/sys/kernel/pty/max")
	if err != nil {
		return snapshot.Pool{}, err
	}
	return snapshot.Pool{InUse: nr, Limit: max}, nil
}

func readIntFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return n, nil
}

func listPIDs() ([]int, error) {
	f, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(names))
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids, nil
}

// clock converts stat start times to wall-clock time.
type clock struct {
	boot  time.Time
	ticks uint64 // per second (AT_CLKTCK)
}

func (c clock) started(startTicks uint64) time.Time {
	return c.boot.Add(time.Duration(startTicks) * time.Second / time.Duration(c.ticks))
}

func readClock() (clock, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return clock{}, err
	}
	c := clock{ticks: 100}
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			sec, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return clock{}, fmt.Errorf("/proc/stat btime: %w", err)
			}
			c.boot = time.Unix(sec, 0)
		}
	}
	if c.boot.IsZero() {
		return clock{}, errors.New("/proc/stat has no btime line")
	}
	if t, ok := auxvClockTicks(); ok {
		c.ticks = t
	}
	return c, nil
}

// auxvClockTicks reads AT_CLKTCK (17) from our own auxiliary vector, the
// value sysconf(_SC_CLK_TCK) returns.
func auxvClockTicks() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 0, false
	}
	for i := 0; i+16 <= len(b); i += 16 {
		key := nativeUint64(b[i:])
		if key == 17 {
			v := nativeUint64(b[i+8:])
			return v, v > 0
		}
	}
	return 0, false
}
