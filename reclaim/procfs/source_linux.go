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
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Source reads snapshots from /proc.
type Source struct {
	log     *zap.Logger
	workers int
}

// NewSource returns a Source that logs to log.
func NewSource(log *zap.Logger) *Source {
	return &Source{log: log, workers: runtime.NumCPU()}
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

	scans := s.scanAll(ctx, pids, clock, opts.OrphanMinAge)
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
		for _, p := range sc.ptys {
			mergePTY(snap.PTYs, p)
		}
	}
	sort.Slice(snap.Processes, func(i, j int) bool { return snap.Processes[i].PID < snap.Processes[j].PID })

	resolveCTTYs(scans, snap.PTYs)
	fillPipeWriters(scans, snap.PipeWriters)
	joinOpenFiles(snap)

	if snap.Unreadable > 0 && os.Geteuid() != 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf(
			"not root: the fds of %d processes could not be read; run as root to see every PTY holder", snap.Unreadable))
	}
	return snap, nil
}

// scanAll scans processes on a few workers. Almost all the cost is system
// time in readlink, which scales with cores.
func (s *Source) scanAll(ctx context.Context, pids []int, clock clock, orphanMinAge time.Duration) []*procScan {
	out := make([]*procScan, len(pids))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < s.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sc := newScanner(clock, orphanMinAge, s.log)
			for i := range next {
				out[i] = sc.scan(pids[i])
			}
		}()
	}
	for i := range pids {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	return out
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
