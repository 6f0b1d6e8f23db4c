//go:build darwin

package libproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// NewSource returns the macOS snapshot source, which reads libproc.
func NewSource(log *zap.Logger) snapshot.Source {
	return &source{log: log}
}

type source struct {
	log *zap.Logger
}

// gone reports errors that mean the process or fd vanished mid-read: those
// are skipped quietly, a snapshot is only "consistent enough".
func gone(err error) bool {
	return errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.EBADF)
}

func denied(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES)
}

// procRead is what one process's pass produced.
type procRead struct {
	proc  *snapshot.Process
	fds   []FDInfo // every fd, for the pipe pass; nil when unreadable
	tasks int
}

// Take reads the machine. It fails only when nothing useful can be read
// (libSystem missing, /dev/ptmx unreadable, pid list unreadable).
func (s *source) Take(ctx context.Context, opts snapshot.Options) (*snapshot.Snapshot, error) {
	l, err := loadLib()
	if err != nil {
		return nil, fmt.Errorf("libproc: %w", err)
	}
	snap := &snapshot.Snapshot{
		Taken:       time.Now(),
		Self:        os.Getpid(),
		PTYs:        make(map[snapshot.PTYID]*snapshot.PTY),
		PipeWriters: make(map[uint64][]int),
	}
	isRoot := os.Geteuid() == 0
	if !isRoot {
		snap.Notes = append(snap.Notes, "not root: other users' processes' fds are not visible, so their PTY fds and pipe ends are missing")
	}

	majors, ttysCount, err := readMajors()
	if err != nil {
		return nil, fmt.Errorf("libproc: %w", err)
	}
	snap.Pool.InUse = ttysCount
	if limit, err := unix.SysctlUint32("kern.tty.ptmx_max"); err == nil {
		snap.Pool.Limit = int(limit)
	} else {
		snap.Notes = append(snap.Notes, fmt.Sprintf("kern.tty.ptmx_max unreadable: %v", err))
	}

	pids, err := l.listAllPIDs()
	if err != nil {
		return nil, fmt.Errorf("libproc: %w", err)
	}
	var reads []*procRead
	revoked, kqUnchecked := 0, 0
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r, rv, kq := s.readProcess(l, pid, majors)
		if r == nil {
			continue
		}
		revoked += rv
		kqUnchecked += kq
		if r.proc.Unreadable {
			snap.Unreadable++
		}
		reads = append(reads, r)
	}
	if revoked > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d revoked vnode fds skipped (slaves of exited sessions; they no longer pin a PTY)", revoked))
	}
	if kqUnchecked > 0 {
		snap.Notes = append(snap.Notes, fmt.Sprintf("%d processes: some kqueue unreadable, their PTY fds are marked watched", kqUnchecked))
	}

	s.findBlocked(ctx, l, snap, reads, opts)

	procs := make([]*snapshot.Process, 0, len(reads))
	for _, r := range reads {
		procs = append(procs, r.proc)
	}
	MarkMasterless(procs, snap.Unreadable)
	for _, r := range reads {
		snap.Processes = append(snap.Processes, r.proc)
		for _, fd := range r.proc.PTYFDs {
			if snap.PTYs[fd.PTY] == nil {
				snap.PTYs[fd.PTY] = ptyInfo(fd.PTY)
			}
		}
	}
	sort.Slice(snap.Processes, func(i, j int) bool { return snap.Processes[i].PID < snap.Processes[j].PID })
	return snap, nil
}

// Pool counts the /dev/ttysNNN nodes in use and reads kern.tty.ptmx_max.
func (s *source) Pool() (snapshot.Pool, error) {
	_, inUse, err := readMajors()
	if err != nil {
		return snapshot.Pool{}, fmt.Errorf("libproc: %w", err)
	}
	limit, err := unix.SysctlUint32("kern.tty.ptmx_max")
	if err != nil {
		return snapshot.Pool{}, fmt.Errorf("sysctl kern.tty.ptmx_max: %w", err)
	}
	return snapshot.Pool{InUse: inUse, Limit: int(limit)}, nil
}

// readMajors learns the PTY majors and counts the PTYs in use. /dev/ptmx
// must exist; no /dev/ttysNNN node at all just means no PTY is allocated.
func readMajors() (Majors, int, error) {
	var st unix.Stat_t
	if err := unix.Stat("/dev/ptmx", &st); err != nil {
		return Majors{}, 0, fmt.Errorf("stat /dev/ptmx: %w", err)
	}
	m := Majors{PTMX: Major(uint32(st.Rdev))}
	entries, err := os.ReadDir("/dev")
	if err != nil {
		return Majors{}, 0, fmt.Errorf("read /dev: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	for _, name := range names {
		if !isTTYSName(name) {
			continue
		}
		// A node can vanish between readdir and stat; try the next one.
		if unix.Stat("/dev/"+name, &st) == nil {
			m.TTYS, m.TTYSKnown = Major(uint32(st.Rdev)), true
			break
		}
	}
	return m, CountTTYS(names), nil
}

// ptyInfo names a PTY and reads its slave node's times. A failed stat leaves
// LastIO zero, which the model reads as "recent": doubt keeps a PTY live.
func ptyInfo(id snapshot.PTYID) *snapshot.PTY {
	p := &snapshot.PTY{ID: id, Name: ptyName(id.Index)}
	var st unix.Stat_t
	if unix.Stat("/dev/"+p.Name, &st) == nil {
		p.LastIO = newestTime(st.Atim.Sec, st.Atim.Nsec, st.Mtim.Sec, st.Mtim.Nsec)
	}
	return p
}

// readProcess reads one process. It returns nil when the process vanished,
// the number of revoked vnode fds seen, and 1 when a kqueue could not be read.
func (s *source) readProcess(l *lib, pid int, majors Majors) (*procRead, int, int) {
	log := s.log.With(zap.Int("pid", pid))
	bsd, err := l.bsdInfo(pid)
	unreadable := false
	switch {
	case err == nil:
	case denied(err):
		// Not root and not ours: kinfo_proc still tells who it is and its
		// controlling terminal, which decides whether a PTY is live.
		kp, kerr := unix.SysctlKinfoProc("kern.proc.pid", pid)
		if kerr != nil || kp.Proc.P_pid != int32(pid) {
			return nil, 0, 0
		}
		bsd, unreadable = bsdFromKinfo(kp), true
	default:
		if !gone(err) {
			log.Debug("proc_pidinfo(PROC_PIDTBSDINFO) failed", zap.Error(err))
		}
		return nil, 0, 0
	}

	r := &procRead{}
	var details []FDDetail
	if !unreadable {
		fds, err := l.listFDs(pid)
		switch {
		case err == nil:
			r.fds = fds
		case denied(err):
			unreadable = true
		case !gone(err):
			log.Debug("proc_pidinfo(PROC_PIDLISTFDS) failed", zap.Error(err))
		}
	}
	revoked := 0
	if r.fds != nil {
		details = s.vnodeDetails(l, pid, r.fds, log)
		revoked = countRevoked(details)
	}
	r.proc = buildProcess(bsd, l.path(pid), details, majors)
	r.proc.Unreadable = unreadable
	if sid, err := unix.Getsid(pid); err == nil {
		r.proc.SID = sid
	}
	if ti, err := l.taskInfo(pid); err == nil {
		r.proc.Threads = int(ti.Threads)
	}

	kqFailed := 0
	if len(r.proc.PTYFDs) > 0 {
		// Only PTY holders are asked: the answer decides the remedy for
		// their fds (in place, or the policy's fallback), and csops is one
		// more call per process.
		if ok, reason := InPlaceReclaimPossible(pid); !ok {
			r.proc.InPlaceRefused = reason
		}
		watched, ok := s.watched(l, pid, r.fds, log)
		for i := range r.proc.PTYFDs {
			// An unreadable kqueue could watch anything: err towards skip.
			r.proc.PTYFDs[i].Watched = !ok || watched[r.proc.PTYFDs[i].FD]
		}
		if !ok {
			kqFailed = 1
		}
	}
	return r, revoked, kqFailed
}

// vnodeDetails reads the vnode fds. ENOENT is a revoked vnode (lsof's
// "(revoked)"); an fd closed meanwhile (EBADF) is skipped.
func (s *source) vnodeDetails(l *lib, pid int, fds []FDInfo, log *zap.Logger) []FDDetail {
	var out []FDDetail
	for _, fd := range fds {
		if fd.Type != FDTypeVnode {
			continue
		}
		v, err := l.vnodePath(pid, int(fd.FD))
		switch {
		case err == nil:
			out = append(out, FDDetail{FD: int(fd.FD), Type: fd.Type, Vnode: &v})
		case errors.Is(err, syscall.ENOENT):
			out = append(out, FDDetail{FD: int(fd.FD), Type: fd.Type, Revoked: true})
		case gone(err):
		default:
			log.Debug("proc_pidfdinfo(PROC_PIDFDVNODEPATHINFO) failed", zap.Int32("fd", fd.FD), zap.Error(err))
		}
	}
	return out
}

// watched collects the fds a live READ/WRITE knote watches, across every
// kqueue of the process: kqueue fds, the workqueue kqueue (fd -1) and the
// fd-less workloop kqueues libdispatch creates. ok is false when one of them
// could not be read.
func (s *source) watched(l *lib, pid int, fds []FDInfo, log *zap.Logger) (map[int]bool, bool) {
	var all []Knote
	ok := true
	read := func(what string, ks []Knote, err error) {
		if err != nil && !gone(err) {
			log.Debug("kqueue unreadable", zap.String("kqueue", what), zap.Error(err))
			ok = false
		}
		all = append(all, ks...)
	}
	for _, fd := range fds {
		if fd.Type == FDTypeKqueue {
			ks, err := l.fdKnotes(pid, int(fd.FD))
			read(fmt.Sprintf("fd %d", fd.FD), ks, err)
		}
	}
	ks, err := l.fdKnotes(pid, -1)
	read("workq", ks, err)
	ids, err := l.dynKqueueIDs(pid)
	read("dynamic list", nil, err)
	for _, id := range ids {
		ks, err := l.dynKnotes(pid, id)
		read(fmt.Sprintf("workloop %#x", id), ks, err)
	}
	return watchedFDs(all), ok
}

// findBlocked runs the stuck-child proof. Candidates are read first; the
// pipe ends of every other process are read only when some candidate sleeps
// on a pipe, since finding its writers needs them all.
func (s *source) findBlocked(ctx context.Context, l *lib, snap *snapshot.Snapshot, reads []*procRead, opts snapshot.Options) {
	var probes []*BlockProbe
	byPID := make(map[int]*BlockProbe)
	waiting := false
	for _, r := range reads {
		p := r.proc
		probe := &BlockProbe{PID: p.PID, Threads: p.Threads}
		probes = append(probes, probe)
		byPID[p.PID] = probe
		if p.PID == snap.Self || p.Threads != 1 || p.State == "Z" || r.fds == nil {
			continue
		}
		if opts.OrphanMinAge > 0 && snap.Taken.Sub(p.Started) < opts.OrphanMinAge {
			continue
		}
		state, err := l.onlyThreadState(p.PID)
		if err != nil || state != ThreadWaiting {
			continue
		}
		probe.Candidate, probe.ThreadState = true, state
		probe.Pipes = s.pipeEnds(l, p.PID, r.fds)
		if _, ok := waitingReadEnd(probe); ok {
			waiting = true
			if kp, err := unix.SysctlKinfoProc("kern.proc.pid", p.PID); err == nil {
				probe.SigCatch = kp.Proc.P_sigcatch
			} else {
				probe.SigCatch = ^uint32(0) // unknown: assume a handler
			}
		}
	}
	if !waiting {
		return
	}
	for _, r := range reads {
		if ctx.Err() != nil {
			return
		}
		if probe := byPID[r.proc.PID]; !probe.Candidate && r.fds != nil {
			probe.Pipes = s.pipeEnds(l, r.proc.PID, r.fds)
		}
	}
	complete := snap.Unreadable == 0
	if !complete {
		snap.Notes = append(snap.Notes, "stuck-child proofs skipped: unreadable processes could hold pipe write ends")
	}
	blocked, writers := FindBlocked(probes, complete)
	for _, r := range reads {
		if b := blocked[r.proc.PID]; b != nil {
			r.proc.Blocked = b
		}
	}
	for pipe, w := range writers {
		snap.PipeWriters[pipe] = w
	}
}

// pipeEnds reads every pipe fd of a process.
func (s *source) pipeEnds(l *lib, pid int, fds []FDInfo) []PipeEnd {
	var out []PipeEnd
	for _, fd := range fds {
		if fd.Type != FDTypePipe {
			continue
		}
		p, err := l.pipeInfo(pid, int(fd.FD))
		if err != nil {
			if !gone(err) {
				s.log.Debug("proc_pidfdinfo(PROC_PIDFDPIPEINFO) failed", zap.Int("pid", pid), zap.Int32("fd", fd.FD), zap.Error(err))
			}
			continue
		}
		out = append(out, PipeEnd{FD: int(fd.FD), Pipe: p})
	}
	return out
}

// kinfo_proc p_flag bits (bsd/sys/proc.h).
const (
	pControlT = 0x00000002 // P_CONTROLT
	pTraced   = 0x00000800 // P_TRACED, set from P_LTRACED by sysctl
)

// bsdFromKinfo fills a BSDInfo from kinfo_proc, which any user may read.
func bsdFromKinfo(kp *unix.KinfoProc) BSDInfo {
	b := BSDInfo{
		Status:    uint32(kp.Proc.P_stat),
		PID:       uint32(kp.Proc.P_pid),
		PPID:      uint32(kp.Eproc.Ppid),
		UID:       kp.Eproc.Ucred.Uid,
		Comm:      cString(kp.Proc.P_comm[:]),
		PGID:      uint32(kp.Eproc.Pgid),
		TDev:      uint32(kp.Eproc.Tdev),
		TPGID:     uint32(kp.Eproc.Tpgid),
		StartSec:  uint64(kp.Proc.P_starttime.Sec),
		StartUsec: uint64(kp.Proc.P_starttime.Usec),
	}
	if kp.Proc.P_flag&pControlT != 0 {
		b.Flags |= ProcFlagControlT
	}
	if kp.Proc.P_flag&pTraced != 0 {
		b.Flags |= ProcFlagTraced
	}
	return b
}
