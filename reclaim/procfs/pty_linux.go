//go:build linux

package procfs

import (
	"bytes"
	"errors"
	"fmt"
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
// pidfd_getfd and ask the kernel for its peer (see ptyOfFD). The link text
// is the holder's to choose (a FUSE file can be named ptmx, and closing a
// copy of it would wait on the user's server forever), so fdinfo and the
// mount table first prove each fd is a PTY master on a kernel file system.
// Without the rights for a copy (not root) we fall back to fdinfo's
// tty-index and the holder's /dev/pts, and mark the identity unproven.
func (s *scanner) pairMasters(pid, pdir int, masters []int, sc *procScan) {
	pidfd := -1
	if s.private {
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			pidfd = fd
			defer unix.Close(pidfd)
		}
	}
	for _, fd := range masters {
		s.step()
		proof, err := s.prove(pdir, fd, snapshot.Master)
		if err != nil {
			if errors.Is(err, errHostile) {
				sc.skipped = append(sc.skipped, fmt.Sprintf("fd %d: %v", fd, err))
			}
			continue
		}
		var peer unix.Stat_t
		var facts kernelFacts
		proven := false
		if pidfd >= 0 {
			side, err := s.ptyOfFD(pidfd, fd, proof, &peer, &facts)
			if s.hostile >= 0 {
				return
			}
			if err == nil && side != snapshot.Master {
				continue
			}
			proven = err == nil
		}
		if !proven && !s.guessPeer(pdir, proof.TTYIndex, &peer) {
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
		sc.ptys = append(sc.ptys, snapshot.PTY{ID: id, LastIO: lastIO(&peer),
			KernelChecked: proven && facts.read, SlaveClosed: facts.slaveClosed, Session: facts.session})
	}
}

// kernelFacts is what a master's copy tells about its PTY machine-wide.
type kernelFacts struct {
	read        bool
	slaveClosed bool
	session     int
}

// readKernelFacts asks a proven master copy whether any slave fd is open
// anywhere (POLLHUP: the slave's last opener closed it) and whose
// controlling terminal the PTY is (TIOCGSID on a master answers for its
// slave). Neither call waits on anything a user controls.
func readKernelFacts(master int, f *kernelFacts) {
	p := []unix.PollFd{{Fd: int32(master), Events: unix.POLLIN}}
	if _, err := unix.Poll(p, 0); err != nil {
		return
	}
	sid, err := unix.IoctlGetInt(master, unix.TIOCGSID)
	switch {
	case err == nil:
		f.session = sid
	case errors.Is(err, unix.ENOTTY):
		f.session = 0 // no session has it as controlling terminal
	default:
		return
	}
	f.read, f.slaveClosed = true, p[0].Revents&unix.POLLHUP != 0
}

var errNotPTY = errors.New("not a PTY")

// ptyOfFD takes a copy of another process's fd with pidfd_getfd and stats
// the slave side of its PTY into slave (TIOCGPTPEER, opened O_PATH so no
// tty code runs and the PTY sees no new opener). The fd number may
// name another file by now, so the copy is checked against the proof
// before anything else touches it; a copy that fails is left in s.hostile
// for the worker to dispose of, never closed here.
func (s *scanner) ptyOfFD(pidfd, fd int, proof FDProof, slave *unix.Stat_t, facts *kernelFacts) (snapshot.Side, error) {
	cp, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return 0, err
	}
	var st unix.Statx_t
	if err := statxNoSync(cp, nil, &st); err != nil || proof.Check(&st) != nil {
		s.hostile = cp
		return 0, errHostile
	}
	defer unix.Close(cp)
	readKernelFacts(cp, facts)
	// The check proved a ptmx node: ask for the peer straight away.
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(cp), unix.TIOCGPTPEER,
		uintptr(unix.O_PATH|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		return 0, errno
	}
	defer unix.Close(int(r))
	return snapshot.Master, unix.Fstat(int(r), slave)
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

// guessPeer finds a master's slave by its tty-index in the holder's own
// /dev/pts. Right in every ordinary case, but not proof. The path is walked
// only when the mount table shows kernel file systems at /, /dev and
// /dev/pts, and without following any symlink: the holder's root may be a
// tree a user controls.
func (s *scanner) guessPeer(pdir, index int, peer *unix.Stat_t) bool {
	if s.table == nil || index < 0 {
		return false
	}
	fd, _, err := openPTSNode(pdir, s.table, index)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, peer); err != nil {
		return false
	}
	idx, ok := SlaveIndex(unix.Major(peer.Rdev), unix.Minor(peer.Rdev))
	return ok && idx == index && peer.Mode&unix.S_IFMT == unix.S_IFCHR
}

// errNoKernelPTS: the process's /, /dev or /dev/pts is not a kernel file
// system as its mount table shows, so its /dev/pts/N is not walked.
var errNoKernelPTS = errors.New("/dev/pts is not on kernel file systems")

// openPTSNode opens /dev/pts/<index> in the root of the process at pdir,
// O_PATH, only when its mount table shows kernel file systems at /, /dev
// and /dev/pts, never following a symlink (the root may be a tree a user
// controls), and returns it with the st_dev of that devpts. ENOENT means
// no such node.
func openPTSNode(pdir int, table *MountTable, index int) (int, uint64, error) {
	pts, ok := table.At("/dev/pts")
	if !ok || !SlaveFS(pts.FSType) {
		return -1, 0, errNoKernelPTS
	}
	dev, ok := table.At("/dev")
	if !ok {
		dev, ok = table.At("/")
	}
	root, rok := table.At("/")
	if !ok || !rok || !KernelFS(dev.FSType) || !KernelFS(root.FSType) {
		return -1, 0, errNoKernelPTS
	}
	// Opening the root magic link O_PATH asks no file system anything.
	rootfd, err := unix.Openat(pdir, "root", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	defer unix.Close(rootfd)
	fd, err := walkNoFollow(rootfd, "dev", "pts", strconv.Itoa(index))
	if err != nil {
		return -1, 0, err
	}
	var st unix.Statx_t
	if err := statxNoSync(fd, nil, &st); err != nil || Mkdev(st.Dev_major, st.Dev_minor) != pts.Dev {
		unix.Close(fd)
		return -1, 0, errNoKernelPTS
	}
	return fd, pts.Dev, nil
}

// walkNoFollow opens dir/names... O_PATH one component at a time, none of
// them a symlink (O_NOFOLLOW: a magic link is a symlink too), so the walk
// never leaves the tree it starts in: what openat2's RESOLVE_IN_ROOT and
// RESOLVE_NO_SYMLINKS give for a path without "..". openat2 itself is not
// used: systemd's RestrictSUIDSGID, which the packaged unit sets, fails
// every openat2 with ENOSYS, since a filter cannot read its flags.
func walkNoFollow(dir int, names ...string) (int, error) {
	cur := dir
	for i, name := range names {
		flags := unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW
		if i < len(names)-1 {
			flags |= unix.O_DIRECTORY
		}
		fd, err := unix.Openat(cur, name, flags, 0)
		if cur != dir {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		var st unix.Statx_t
		if err := statxNoSync(fd, nil, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK {
			// O_PATH|O_NOFOLLOW opens a symlink itself rather than failing.
			unix.Close(fd)
			return -1, unix.ELOOP
		}
		cur = fd
	}
	return cur, nil
}

// nodesGone tells, for each node, whether the slave node /dev/pts/N is
// gone from the holder's devpts. The kernel removes the node when the
// master's open file is released, so a gone node proves that no process
// holds the master, including those a scan could not read. Anything
// unclear is left out (not known).
func nodesGone(nodes []snapshot.PTYNode, mounts *Mounts) map[snapshot.PTYID]bool {
	gone := map[snapshot.PTYID]bool{}
	for _, n := range nodes {
		pdir, err := unix.Open("/proc/"+strconv.Itoa(n.Holder), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		table, err := mounts.Of(pdir, make([]byte, 8192))
		if err != nil {
			unix.Close(pdir)
			continue
		}
		if pts, ok := table.PTSInstance(); !ok || pts != n.PTY.Instance {
			unix.Close(pdir)
			continue // the holder's /dev/pts is not that PTY's devpts
		}
		fd, _, err := openPTSNode(pdir, table, n.PTY.Index)
		unix.Close(pdir)
		switch {
		case errors.Is(err, unix.ENOENT):
			gone[n.PTY] = true
		case err == nil:
			unix.Close(fd)
			gone[n.PTY] = false
		}
	}
	return gone
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
	// Not through Kcmp: a pointer passed as a uintptr through a Go
	// function may point at a stack copy that a stack growth left behind;
	// only in the Syscall6 call itself is the conversion safe.
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(pid), kcmpEpollTFD, uintptr(fd), uintptr(unsafe.Pointer(&slot)), 0)
	return errno == 0 && r == 0
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

// ptsInstance returns the devpts instance at pid's /dev/pts from its mount
// table, without walking a path (see MountTable.PTSInstance).
func ptsInstance(pid int, mounts *Mounts) (uint64, bool) {
	pdir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	defer unix.Close(pdir)
	t, err := mounts.Of(pdir, make([]byte, 8192))
	if err != nil {
		return 0, false
	}
	return t.PTSInstance()
}
