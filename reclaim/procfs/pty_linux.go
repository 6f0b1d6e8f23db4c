//go:build linux

package procfs

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// kcmp(2) types (include/uapi/linux/kcmp.h); x/sys/unix does not name them.
const (
	kcmpFile     = 0
	kcmpEpollTFD = 7
)

// kcmpEpollSlot is struct kcmp_epoll_slot.
type kcmpEpollSlot struct {
	efd  uint32
	tfd  uint32
	toff uint32
}

// Kcmp compares a resource of two processes; 0 means "the same".
func Kcmp(pid1, pid2, typ int, idx1, idx2 uintptr) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), uintptr(typ), idx1, idx2, 0)
	if errno != 0 {
		return -1, errno
	}
	return int(r), nil
}

// SameFile reports whether fd1 of pid1 and fd2 of pid2 are one open file.
func SameFile(pid1, fd1, pid2, fd2 int) (bool, error) {
	r, err := Kcmp(pid1, pid2, kcmpFile, uintptr(fd1), uintptr(fd2))
	return r == 0, err
}

// pairMasters establishes which PTY each master fd belongs to. All masters
// share one inode, so the path tells nothing: we take a copy of the fd with
// pidfd_getfd and ask the kernel for its peer (see ptyOfCopy). Without the
// rights for that (not root) we fall back to fdinfo's tty-index and the
// holder's /dev/pts, and mark the identity unproven.
func (s *scanner) pairMasters(pid, pdir int, masters []int, sc *procScan) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		pidfd = -1
	} else {
		defer unix.Close(pidfd)
	}
	for _, fd := range masters {
		var peer unix.Stat_t
		proven := false
		if pidfd >= 0 {
			side, err := ptyOfFD(pidfd, fd, &peer)
			if err == nil && side != snapshot.Master {
				continue
			}
			proven = err == nil
		}
		if !proven && !s.guessPeer(pdir, fd, &peer) {
			continue
		}
		idx, ok := SlaveIndex(unix.Major(peer.Rdev), unix.Minor(peer.Rdev))
		if !ok {
			continue
		}
		id := snapshot.PTYID{Instance: peer.Dev, Index: idx}
		sc.proc.PTYFDs = append(sc.proc.PTYFDs, snapshot.PTYFD{
			FD: fd, Side: snapshot.Master, PTY: id, Proven: proven,
		})
		sc.ptys = append(sc.ptys, snapshot.PTY{ID: id, LastIO: lastIO(&peer)})
	}
}

var errNotPTY = errors.New("not a PTY")

// ptyOfFD takes a copy of another process's fd with pidfd_getfd and stats
// the slave side of its PTY into slave (see statPTY).
func ptyOfFD(pidfd, fd int, slave *unix.Stat_t) (snapshot.Side, error) {
	cp, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(cp)
	return statPTY(cp, slave)
}

// statPTY stats the slave side of the PTY that our fd refers to.
func statPTY(fd int, slave *unix.Stat_t) (snapshot.Side, error) {
	sfd, side, err := SlaveOf(fd)
	if err != nil {
		return 0, err
	}
	if sfd != fd {
		defer unix.Close(sfd)
	}
	return side, unix.Fstat(sfd, slave)
}

// SlaveOf returns an fd on the slave side of the PTY our fd refers to: for
// a master, a new fd from TIOCGPTPEER opened O_PATH (so no tty code runs
// and the PTY sees no new opener), which the caller closes; for a slave, fd
// itself.
func SlaveOf(fd int) (slave int, side snapshot.Side, err error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return -1, 0, err
	}
	major, minor := unix.Major(st.Rdev), unix.Minor(st.Rdev)
	if _, ok := SlaveIndex(major, minor); ok && st.Mode&unix.S_IFMT == unix.S_IFCHR {
		return fd, snapshot.Slave, nil
	}
	if !IsPTMX(major, minor) {
		return -1, 0, errNotPTY
	}
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCGPTPEER,
		uintptr(unix.O_PATH|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return -1, 0, errno
	}
	return int(r), snapshot.Master, nil
}

// StatSlave returns the PTY a slave-side fd names and its last I/O time.
func StatSlave(slave int) (snapshot.PTYID, time.Time, error) {
	var st unix.Stat_t
	if err := unix.Fstat(slave, &st); err != nil {
		return snapshot.PTYID{}, time.Time{}, err
	}
	idx, ok := SlaveIndex(unix.Major(st.Rdev), unix.Minor(st.Rdev))
	if !ok {
		return snapshot.PTYID{}, time.Time{}, errNotPTY
	}
	return snapshot.PTYID{Instance: st.Dev, Index: idx}, lastIO(&st), nil
}

// guessPeer finds a master's slave by fdinfo's tty-index in the holder's own
// /dev/pts. Right in every ordinary case, but not proof.
func (s *scanner) guessPeer(pdir, fd int, peer *unix.Stat_t) bool {
	fi, err := s.readFDInfo(pdir, fd)
	if err != nil || fi.TTYIndex < 0 {
		return false
	}
	name := []byte("root/dev/pts/" + strconv.Itoa(fi.TTYIndex) + "\x00")
	if err := fstatatRaw(pdir, name, peer); err != nil {
		return false
	}
	idx, ok := SlaveIndex(unix.Major(peer.Rdev), unix.Minor(peer.Rdev))
	return ok && idx == fi.TTYIndex
}

// markWatched sets Watched on PTY fds still registered in one of the
// holder's epoll sets. fdinfo lists registrations by the fd number they had
// when added; kcmp(KCMP_EPOLL_TFD) proves the registered file is the same
// open file as the fd, which also catches registrations made under a number
// since closed (dup then close).
func (s *scanner) markWatched(pid, pdir int, epolls []int, fds []snapshot.PTYFD) {
	byFD := make(map[int]int, len(fds))
	for i, f := range fds {
		byFD[f.FD] = i
	}
	for _, efd := range epolls {
		fi, err := s.readFDInfo(pdir, efd)
		if err != nil {
			continue
		}
		var stale []EpollEntry
		for _, e := range fi.Epoll {
			if i, ok := byFD[e.TFD]; ok && epollHas(pid, efd, e.TFD, e.TFD) {
				fds[i].Watched = true
				continue
			}
			stale = append(stale, e)
		}
		for _, e := range stale {
			for i := range fds {
				if !fds[i].Watched && epollHas(pid, efd, e.TFD, fds[i].FD) {
					fds[i].Watched = true
				}
			}
		}
	}
}

// epollHas reports whether the file registered in pid's epoll efd under tfd
// is the open file pid has at fd.
func epollHas(pid, efd, tfd, fd int) bool {
	slot := kcmpEpollSlot{efd: uint32(efd), tfd: uint32(tfd)}
	r, err := Kcmp(pid, pid, kcmpEpollTFD, uintptr(fd), uintptr(unsafe.Pointer(&slot)))
	runtime.KeepAlive(&slot)
	return err == nil && r == 0
}

// maybeBlocked probes whether a single-threaded, old enough process sleeps
// in read() on a pipe it holds the read end of. Only such processes pay for
// the wchan, syscall, fdinfo and status reads.
func (s *scanner) maybeBlocked(pdir int, sc *procScan) bool {
	p := sc.proc
	if p.State != "S" || p.Threads != 1 || len(sc.pipes) == 0 {
		return false
	}
	if s.now.Sub(p.Started) < s.orphanMinAge {
		return false
	}
	w, err := s.readAt(pdir, "wchan")
	if err != nil || !bytes.Contains(w, []byte("pipe_read")) {
		return false
	}
	b, err := s.readAt(pdir, "syscall")
	if err != nil {
		return false
	}
	call, err := ParseSyscall(b)
	if err != nil || call.Running || call.InUser || !isReadSyscall(runtime.GOARCH, call.Nr) {
		return false
	}
	fd := int(call.Args[0])
	var ino uint64
	for _, pf := range sc.pipes {
		if pf.fd == fd {
			ino = pf.ino
		}
	}
	if ino == 0 {
		return false
	}
	fi, err := s.readFDInfo(pdir, fd)
	if err != nil || !fi.Readable() {
		return false
	}
	st := s.statusOf(pdir, sc)
	if st == nil {
		return false
	}
	p.Blocked = &snapshot.BlockedRead{
		FD:             fd,
		Pipe:           ino,
		SignalHandlers: st.SigCgt&^st.SigBlk != 0,
	}
	return true
}

// StartTime reads a process's start time (stat field 22), its identity
// together with the pid.
func StartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return 0, err
	}
	return st.StartTime, nil
}

// BlockedPipeRead re-reads whether pid sleeps in read() on a pipe, and on
// which fd and pipe inode. ok is false when it no longer does.
func BlockedPipeRead(pid int) (fd int, ino uint64, ok bool) {
	base := "/proc/" + strconv.Itoa(pid) + "/"
	w, err := os.ReadFile(base + "wchan")
	if err != nil || !bytes.Contains(w, []byte("pipe_read")) {
		return 0, 0, false
	}
	b, err := os.ReadFile(base + "syscall")
	if err != nil {
		return 0, 0, false
	}
	call, err := ParseSyscall(b)
	if err != nil || call.Running || call.InUser || !isReadSyscall(runtime.GOARCH, call.Nr) {
		return 0, 0, false
	}
	fd = int(call.Args[0])
	l, err := os.Readlink(base + "fd/" + strconv.Itoa(fd))
	if err != nil {
		return 0, 0, false
	}
	kind, ino, _ := Link([]byte(l))
	return fd, ino, kind == LinkPipe
}
