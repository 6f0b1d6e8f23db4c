//go:build linux

package procfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func nativeUint64(b []byte) uint64 { return binary.NativeEndian.Uint64(b) }

// scanner holds one worker's reusable buffers.
type scanner struct {
	clock        clock
	orphanMinAge time.Duration
	log          *zap.Logger
	now          time.Time
	dents        []byte
	link         []byte
	file         []byte
	name         []byte

	// mounts is the scan's mount table cache; table is the current
	// process's view, read at its first PTY candidate.
	mounts   *Mounts
	table    *MountTable
	tableErr error
	// private is true when this worker's OS thread has its own fd table
	// (unshare CLONE_FILES): only then may it take copies of other
	// processes' fds, because only then can a copy that proves hostile be
	// dropped without anything else we hold being stuck with it.
	private bool
	// hostile is such a copy (-1 when none): the worker must stop and
	// dispose of it (DisposeHostile).
	hostile int
	// job, when set, records progress: the scan's watchdog abandons a
	// worker whose step took too long.
	job *job
}

func newScanner(c clock, orphanMinAge time.Duration, log *zap.Logger) *scanner {
	return &scanner{
		hostile:      -1,
		mounts:       NewMounts(),
		clock:        c,
		orphanMinAge: orphanMinAge,
		log:          log,
		now:          time.Now(),
		dents:        make([]byte, 32<<10),
		link:         make([]byte, 4096),
		file:         make([]byte, 8192),
		name:         make([]byte, 0, 64),
	}
}

// gone reports errors that mean "the process or fd went away": normal
// during a scan, and never a reason to fail it.
func gone(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH)
}

// scan reads one process. It returns nil when the process vanished.
func (s *scanner) scan(pid int) *procScan {
	// A dirfd on /proc/PID pins the process we mean: every later read goes
	// through it and fails with ESRCH rather than reading a reused pid.
	pdir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(pdir)
	s.table, s.tableErr = nil, nil
	s.step()

	b, err := s.readAt(pdir, "stat")
	if err != nil {
		return nil
	}
	st, err := ParseStat(b)
	if err != nil {
		s.log.Debug("unparsable stat", zap.Int("pid", pid), zap.Error(err))
		return nil
	}
	sc := &procScan{
		stat: st,
		proc: &snapshot.Process{
			PID:       pid,
			PPID:      st.PPID,
			SID:       st.Session,
			StartTime: st.StartTime,
			Started:   s.clock.started(st.StartTime),
			UID:       -1,
			Comm:      st.Comm,
			State:     string(st.State),
			Threads:   st.Threads,
			Kernel:    st.Kernel(),
		},
	}
	if sc.proc.Kernel {
		return sc
	}

	masters, epolls, ok := s.scanFDs(pdir, sc)
	if !ok {
		return sc
	}
	if len(masters) > 0 {
		s.pairMasters(pid, pdir, masters, sc)
		if s.hostile >= 0 {
			// An fd changed into a hostile file between its proof and its
			// copy: this process plays games, so nothing it showed counts.
			sc.proc.Unreadable = true
			sc.proc.PTYFDs, sc.ptys = nil, nil
			return sc
		}
	}
	interesting := len(sc.proc.PTYFDs) > 0
	if interesting && len(epolls) > 0 {
		s.markWatched(pid, pdir, epolls, sc.proc.PTYFDs)
	}
	if s.maybeBlocked(pdir, sc) {
		interesting = true
	}
	if interesting {
		s.readDetails(pdir, sc)
	}
	sortPTYFDs(sc.proc.PTYFDs)
	return sc
}

// scanFDs reads /proc/PID/fd: one getdents pass and one readlink per fd,
// the unavoidable cost. Slaves are confirmed here by their device number;
// master candidates and epoll fds are returned for the few extra reads they
// need.
func (s *scanner) scanFDs(pdir int, sc *procScan) (masters, epolls []int, ok bool) {
	dfd, err := unix.Openat(pdir, "fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			sc.proc.Unreadable = true
		}
		return nil, nil, false
	}
	defer unix.Close(dfd)
	for {
		s.step()
		n, err := unix.Getdents(dfd, s.dents)
		if err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				sc.proc.Unreadable = true
			}
			return masters, epolls, !gone(err) && !sc.proc.Unreadable
		}
		if n <= 0 {
			return masters, epolls, true
		}
		for off := 0; off+19 <= n; {
			reclen := int(binary.NativeEndian.Uint16(s.dents[off+16:]))
			if reclen <= 0 || off+reclen > n {
				break
			}
			name := s.dents[off+19 : off+reclen] // NUL-terminated, padded
			off += reclen
			if name[0] == '.' {
				continue
			}
			fd, ok := direntNumber(name)
			if !ok {
				continue
			}
			l, err := readlinkat(dfd, name, s.link)
			if err != nil {
				continue // closed since getdents: fine
			}
			kind, ino, _ := Link(l)
			switch kind {
			case LinkPTMX:
				masters = append(masters, fd)
			case LinkNumeric:
				s.statSlave(pdir, dfd, fd, name, sc)
			case LinkPipe:
				sc.pipes = append(sc.pipes, pipeFD{fd: fd, ino: ino})
			case LinkEpoll:
				epolls = append(epolls, fd)
			}
		}
	}
}

// direntNumber parses a NUL-terminated decimal fd name.
func direntNumber(name []byte) (int, bool) {
	n := 0
	for i, c := range name {
		if c == 0 {
			return n, i > 0
		}
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return 0, false
}

// readlinkat reads a link whose NUL-terminated name sits in a dirent buffer,
// without allocating: this runs once per fd on the machine.
func readlinkat(dirfd int, name, buf []byte) ([]byte, error) {
	n, _, errno := unix.Syscall6(unix.SYS_READLINKAT, uintptr(dirfd),
		uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), 0, 0)
	runtime.KeepAlive(name)
	if errno != 0 {
		return nil, errno
	}
	return buf[:n], nil
}

// statSlave records an fd whose link looks like /dev/pts/N when it is a
// PTY slave. The link text is the holder's to choose (a FUSE file can be
// named /dev/pts/0), so fdinfo and the mount table first prove the file is
// on devpts; only then is it stat'ed, from cached attributes only. Its
// st_dev is the devpts instance, exact even for a container's PTY.
func (s *scanner) statSlave(pdir, dfd, fd int, name []byte, sc *procScan) {
	s.step()
	proof, err := s.prove(pdir, fd, snapshot.Slave)
	if err != nil {
		if errors.Is(err, errHostile) {
			sc.skipped = append(sc.skipped, fmt.Sprintf("fd %d: %v", fd, err))
		}
		return
	}
	var st unix.Statx_t
	if err := statxNoSync(dfd, name, &st); err != nil {
		return
	}
	if proof.Check(&st) != nil {
		return
	}
	idx, _ := SlaveIndex(st.Rdev_major, st.Rdev_minor)
	id := snapshot.PTYID{Instance: proof.Mount.Dev, Index: idx}
	sc.proc.PTYFDs = append(sc.proc.PTYFDs, snapshot.PTYFD{
		FD:     fd,
		Side:   snapshot.Slave,
		PTY:    id,
		Proven: true,
		// The kernel unlinks /dev/pts/N when the master closes.
		HungUp: st.Nlink == 0,
	})
	sc.ptys = append(sc.ptys, snapshot.PTY{ID: id, LastIO: statxLastIO(&st)})
}

// prove reads fd's fdinfo and proves from it and the process's mount table
// that the fd may be a PTY of side (Mounts.Prove).
func (s *scanner) prove(pdir, fd int, side snapshot.Side) (FDProof, error) {
	fi, err := s.readFDInfo(pdir, fd)
	if err != nil {
		return FDProof{}, err
	}
	if s.table == nil && s.tableErr == nil {
		s.table, s.tableErr = s.mounts.Of(pdir, s.file)
	}
	if s.tableErr != nil {
		return FDProof{}, s.tableErr
	}
	return s.mounts.Prove(s.table, fi, side)
}

// step records progress for the watchdog.
func (s *scanner) step() {
	if s.job != nil {
		s.job.beat.Store(time.Now().UnixNano())
	}
}

func fstatatRaw(dirfd int, name []byte, st *unix.Stat_t) error {
	_, _, errno := unix.Syscall6(unix.SYS_NEWFSTATAT, uintptr(dirfd),
		uintptr(unsafe.Pointer(&name[0])), uintptr(unsafe.Pointer(st)), 0, 0, 0)
	runtime.KeepAlive(name)
	if errno != 0 {
		return errno
	}
	return nil
}

// lastIO is the newest of a slave node's atime (reads) and mtime (writes).
func lastIO(st *unix.Stat_t) time.Time {
	a := time.Unix(st.Atim.Unix())
	m := time.Unix(st.Mtim.Unix())
	if m.After(a) {
		return m
	}
	return a
}

// readAt reads a small /proc file relative to dirfd into the scanner's buffer.
func (s *scanner) readAt(dirfd int, name string) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	total := 0
	for {
		if total == len(s.file) {
			s.file = append(s.file, make([]byte, len(s.file))...)
		}
		n, err := unix.Read(fd, s.file[total:])
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return s.file[:total], nil
		}
		total += n
	}
}

func (s *scanner) readFDInfo(pdir, fd int) (FDInfo, error) {
	s.name = append(append(s.name[:0], "fdinfo/"...), strconv.Itoa(fd)...)
	b, err := s.readAt(pdir, string(s.name))
	if err != nil {
		return FDInfo{}, err
	}
	return ParseFDInfo(b)
}

// readDetails fills the fields read only for processes that matter.
func (s *scanner) readDetails(pdir int, sc *procScan) {
	p := sc.proc
	if st := s.statusOf(pdir, sc); st != nil {
		p.UID = st.UID
		p.TracerPID = st.TracerPID
		p.Seccomp = st.Seccomp
	}
	if l, err := readlinkat(pdir, []byte("exe\x00"), s.link); err == nil {
		p.Exe = string(bytes.TrimSuffix(l, []byte(" (deleted)")))
	}
}

// statusOf reads and parses the process's status once; nil when it cannot.
func (s *scanner) statusOf(pdir int, sc *procScan) *Status {
	if sc.status == nil {
		b, err := s.readAt(pdir, "status")
		if err != nil {
			return nil
		}
		st, err := ParseStatus(b)
		if err != nil {
			return nil
		}
		sc.status = &st
	}
	return sc.status
}

func sortPTYFDs(fds []snapshot.PTYFD) {
	slices.SortFunc(fds, func(a, b snapshot.PTYFD) int { return a.FD - b.FD })
}
