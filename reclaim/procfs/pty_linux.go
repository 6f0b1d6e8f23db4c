//go:build linux

package procfs

import (
	"bytes"
	"runtime"
	"strconv"
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
// pidfd_getfd and ask the kernel for its peer with TIOCGPTPEER opened
// O_PATH, which has no tty side effects. fstat of the peer gives the devpts
// instance, the index and the slave's times. Without the rights for that
// (not root) we fall back to fdinfo's tty-index and the holder's /dev/pts,
// and mark the identity unproven.
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
			var isMaster bool
			isMaster, proven = peerOf(pidfd, fd, &peer)
			if proven && !isMaster {
				continue
			}
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

// peerOf stats the slave paired with a master fd of another process.
// ok is false when the copy could not be taken (rights, fd closed).
func peerOf(pidfd, fd int, peer *unix.Stat_t) (isMaster, ok bool) {
	cp, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return false, false
	}
	defer unix.Close(cp)
	var st unix.Stat_t
	if err := unix.Fstat(cp, &st); err != nil {
		return false, false
	}
	if !IsPTMX(unix.Major(st.Rdev), unix.Minor(st.Rdev)) {
		return false, true
	}
	// O_PATH: the open runs no tty code, so the PTY sees no new opener.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(cp), unix.TIOCGPTPEER,
		uintptr(unix.O_PATH|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return true, false
	}
	pfd := int(r)
	defer unix.Close(pfd)
	if err := unix.Fstat(pfd, peer); err != nil {
		return true, false
	}
	return true, true
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
	b, err = s.readAt(pdir, "status")
	if err != nil {
		return false
	}
	st, err := ParseStatus(b)
	if err != nil {
		return false
	}
	p.Blocked = &snapshot.BlockedRead{
		FD:             fd,
		Pipe:           ino,
		SignalHandlers: st.SigCgt&^st.SigBlk != 0,
	}
	return true
}
