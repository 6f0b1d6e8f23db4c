//go:build linux

package procfs

// Hostile files. Closing a file runs its file system's flush, and stat runs
// its getattr: on FUSE both are requests to a user's server, which need not
// ever answer, and the caller then sleeps in D state beyond SIGKILL. So
// nothing here copies, opens, stats or closes a file of another process
// before kernel-only facts prove which file system serves it:
// /proc/PID/fdinfo/N (mnt_id; tty-index exists only for PTY masters) and
// /proc/PID/mountinfo (the mount's type and st_dev). Neither costs a file
// system request. After a copy, statx with AT_STATX_DONT_SYNC (served from
// the inode, never from a server) proves the copy is the file that was
// judged: the fd number may have been reused in between.

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// mountKey names one view of the mount table: what /proc/PID/mountinfo
// shows depends only on the process's mount namespace and its root.
type mountKey struct {
	ns   string // readlink ns/mnt: "mnt:[4026531841]"
	root string // readlink root
}

// MountTable is one view of the mount table.
type MountTable struct {
	byID map[int]Mount
	all  []Mount
}

// Mounts caches mount tables by mount namespace and root. Mount ids are
// unique machine-wide while a mount exists (an open fd pins its mount), so
// an id missing from one view is looked up in the others. Use one Mounts
// for one scan: an id freed and reused later could name another mount.
type Mounts struct {
	mu     sync.Mutex
	tables map[mountKey]*MountTable
	reads  int // mountinfo reads, for tests and benchmarks
}

// NewMounts returns an empty cache.
func NewMounts() *Mounts { return &Mounts{tables: map[mountKey]*MountTable{}} }

// Reads says how many mountinfo files were read.
func (c *Mounts) Reads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reads
}

// Of returns the mount table pid sees, through pdir (a dirfd on /proc/PID).
// The lock is never held across a read, so one slow read delays nobody else.
func (c *Mounts) Of(pdir int, buf []byte) (*MountTable, error) {
	ns, err := readlinkString(pdir, "ns/mnt", buf)
	if err != nil {
		return nil, err
	}
	root, err := readlinkString(pdir, "root", buf)
	if err != nil {
		return nil, err
	}
	key := mountKey{ns: ns, root: root}
	c.mu.Lock()
	t := c.tables[key]
	c.mu.Unlock()
	if t != nil {
		return t, nil
	}
	b, err := readFileAt(pdir, "mountinfo", buf)
	if err != nil {
		return nil, err
	}
	ms, err := ParseMountinfo(b)
	if err != nil {
		return nil, err
	}
	t = &MountTable{byID: make(map[int]Mount, len(ms)), all: ms}
	for _, m := range ms {
		t.byID[m.ID] = m
	}
	c.mu.Lock()
	c.tables[key] = t
	c.reads++
	c.mu.Unlock()
	return t, nil
}

// Mount finds a mount by id in t, else in any other table read so far.
func (c *Mounts) Mount(t *MountTable, id int) (Mount, bool) {
	if m, ok := t.byID[id]; ok {
		return m, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.tables {
		if m, ok := o.byID[id]; ok {
			return m, true
		}
	}
	return Mount{}, false
}

// At returns the topmost mount at a mount point (as the table's process
// sees paths), and false when nothing is mounted there.
func (t *MountTable) At(point string) (Mount, bool) {
	var top Mount
	found := false
	for _, m := range t.all {
		if m.Point != point {
			continue
		}
		// Later lines are mounted later; one on top of another at the same
		// point has it as parent.
		if !found || m.Parent == top.ID {
			top, found = m, true
		}
	}
	return top, found
}

// PTSInstance returns the st_dev of the devpts mounted at /dev/pts in t, the
// instance a path /dev/pts/N names for its processes. No path is walked:
// the process's root may be a directory a user controls, with /dev/pts a
// symlink into anywhere.
func (t *MountTable) PTSInstance() (uint64, bool) {
	m, ok := t.At("/dev/pts")
	if !ok || !SlaveFS(m.FSType) {
		return 0, false
	}
	return m.Dev, true
}

// KernelDev reports whether files of device dev are served by the kernel:
// some mount of the table has that st_dev and none of those is FUSE.
func (t *MountTable) KernelDev(dev uint64) bool {
	found := false
	for _, m := range t.all {
		if m.Dev == dev {
			if !KernelFS(m.FSType) {
				return false
			}
			found = true
		}
	}
	return found
}

// KernelFS reports whether a file system type has no user-space server.
func KernelFS(fstype string) bool {
	return fstype != "fuse" && fstype != "fuseblk" && fstype != "cuse" && !strings.HasPrefix(fstype, "fuse.")
}

// MountsOf reads the mount table pid sees.
func MountsOf(pid int) (*MountTable, error) {
	pdir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(pdir)
	return NewMounts().Of(pdir, make([]byte, 8192))
}

// FDProof is what kernel-only facts say about one fd of another process,
// read before anything touches its file.
type FDProof struct {
	Side snapshot.Side
	// Mount is the mount the file is on; a copy's st_dev must be its Dev.
	Mount Mount
	// TTYIndex is a master's index (-1 for a slave).
	TTYIndex int
}

var errHostile = errors.New("not on a kernel-served PTY file system")

// ErrMainThread is PrivateFDTable's refusal to run on the main thread.
var ErrMainThread = errors.New("the main thread cannot have a private fd table")

// Prove decides from fdinfo and the mount table whether an fd may be a PTY
// of the given side: a master must have fdinfo's tty-index (only the PTY
// driver prints it) and live on devpts, devtmpfs or tmpfs; a slave must
// live on devpts. Anything else, FUSE above all, is never touched.
func (c *Mounts) Prove(t *MountTable, fi FDInfo, side snapshot.Side) (FDProof, error) {
	m, ok := c.Mount(t, fi.MntID)
	if !ok {
		return FDProof{}, fmt.Errorf("mount %d is not in the mount table", fi.MntID)
	}
	p := FDProof{Side: side, Mount: m, TTYIndex: fi.TTYIndex}
	switch {
	case side == snapshot.Master && (fi.TTYIndex < 0 || !MasterFS(m.FSType)):
		return p, fmt.Errorf("%w: a %s file with no tty-index", errHostile, m.FSType)
	case side == snapshot.Slave && (fi.TTYIndex >= 0 || !SlaveFS(m.FSType)):
		return p, fmt.Errorf("%w: a %s file", errHostile, m.FSType)
	}
	return p, nil
}

// Check proves, from a statx made with AT_STATX_DONT_SYNC, that a file is
// the PTY node the proof was made for: a character device of the right
// numbers on the proven mount's file system. A FUSE file may claim any
// mode and numbers, but never another file system's st_dev.
func (p FDProof) Check(st *unix.Statx_t) error {
	dev := Mkdev(st.Dev_major, st.Dev_minor)
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || dev != p.Mount.Dev {
		return errHostile
	}
	switch p.Side {
	case snapshot.Master:
		if !IsPTMX(st.Rdev_major, st.Rdev_minor) {
			return errNotPTY
		}
	case snapshot.Slave:
		if _, ok := SlaveIndex(st.Rdev_major, st.Rdev_minor); !ok {
			return errNotPTY
		}
	}
	return nil
}

// statxNoSync stats name relative to dirfd (or dirfd itself when name is
// empty) from the inode's cached attributes only: AT_STATX_DONT_SYNC keeps
// FUSE (and network file systems) from asking their server.
func statxNoSync(dirfd int, name []byte, st *unix.Statx_t) error {
	flags := unix.AT_STATX_DONT_SYNC
	p := name
	if len(p) == 0 || p[0] == 0 {
		p = []byte{0}
		flags |= unix.AT_EMPTY_PATH
	}
	_, _, errno := unix.Syscall6(unix.SYS_STATX, uintptr(dirfd), uintptr(unsafe.Pointer(&p[0])),
		uintptr(flags), unix.STATX_BASIC_STATS, uintptr(unsafe.Pointer(st)), 0)
	runtime.KeepAlive(p)
	if errno != 0 {
		return errno
	}
	return nil
}

// StatxNoSync is statxNoSync on an fd of our own.
func StatxNoSync(fd int, st *unix.Statx_t) error { return statxNoSync(fd, nil, st) }

func statxTime(t unix.StatxTimestamp) time.Time { return time.Unix(t.Sec, int64(t.Nsec)) }

// statxLastIO is lastIO for a statx result.
func statxLastIO(st *unix.Statx_t) time.Time {
	a, m := statxTime(st.Atime), statxTime(st.Mtime)
	if m.After(a) {
		return m
	}
	return a
}

// SideOf tells from fdinfo alone which side an fd can be: only masters
// have a tty-index.
func SideOf(fi FDInfo) snapshot.Side {
	if fi.TTYIndex >= 0 {
		return snapshot.Master
	}
	return snapshot.Slave
}

// ProveFD reads the kernel-only facts about pid's fd and proves it may be
// a PTY (see Mounts.Prove; fdinfo tells the side), for callers outside a
// scan: the injector, before it takes a reference copy.
func ProveFD(pid, fd int) (FDProof, error) {
	fi, c, t, err := fdFacts(pid, fd)
	if err != nil {
		return FDProof{}, err
	}
	return c.Prove(t, fi, SideOf(fi))
}

// fdFacts reads pid's fd's fdinfo and the mount table pid sees: the
// kernel-only facts every proof starts from.
func fdFacts(pid, fd int) (FDInfo, *Mounts, *MountTable, error) {
	pdir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return FDInfo{}, nil, nil, err
	}
	defer unix.Close(pdir)
	buf := make([]byte, 8192)
	b, err := readFileAt(pdir, "fdinfo/"+strconv.Itoa(fd), buf)
	if err != nil {
		return FDInfo{}, nil, nil, err
	}
	fi, err := ParseFDInfo(b)
	if err != nil {
		return FDInfo{}, nil, nil, err
	}
	c := NewMounts()
	t, err := c.Of(pdir, buf)
	if err != nil {
		return FDInfo{}, nil, nil, err
	}
	return fi, c, t, nil
}

// ProveDevNull proves from kernel-only facts, before anything copies or
// closes it, that pid's fd is a file on a kernel file system (fdinfo's
// mnt_id in the process's mount table), and returns the proof that a
// copy's statx must then pass (CheckDevNull). The link text alone proves
// nothing: a FUSE file bind-mounted on /dev/null reads "/dev/null" too, and
// closing a copy of it waits on the user's server.
func ProveDevNull(pid, fd int) (Mount, error) {
	fi, c, t, err := fdFacts(pid, fd)
	if err != nil {
		return Mount{}, err
	}
	m, ok := c.Mount(t, fi.MntID)
	if !ok {
		return Mount{}, fmt.Errorf("mount %d is not in the mount table", fi.MntID)
	}
	if !KernelFS(m.FSType) {
		return m, fmt.Errorf("%w: a %s file", errHostile, m.FSType)
	}
	return m, nil
}

// CheckDevNull proves from a statx made with AT_STATX_DONT_SYNC that a
// copy is the null device (character 1:3) on the proven mount.
func CheckDevNull(m Mount, st *unix.Statx_t) error {
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || Mkdev(st.Dev_major, st.Dev_minor) != m.Dev ||
		st.Rdev_major != 1 || st.Rdev_minor != 3 {
		return fmt.Errorf("%w: not the null device", errHostile)
	}
	return nil
}

// DisposeHostile closes a copy that proved to be on a file system a user
// serves, on a thread whose fd table is private (unshare CLONE_FILES): it
// first drops every other fd of that table, so that if the close sleeps
// forever in the server's flush, the stuck thread holds nothing anyone
// needs (no lock file, no socket). The calling goroutine must be locked to
// that thread and must do nothing after this returns but exit.
func DisposeHostile(fd int) {
	if fd > 0 {
		_ = unix.CloseRange(0, uint(fd-1), 0)
	}
	_ = unix.CloseRange(uint(fd+1), ^uint(0), 0)
	_ = unix.Close(fd)
}

// PrivateFDTable gives the calling OS thread its own fd table (unshare
// CLONE_FILES), for taking copies of other processes' fds: a copy that
// proves hostile can then be dropped by DisposeHostile without anything
// else we hold being stuck with it. The caller must be locked to its
// thread for good (runtime.LockOSThread, never unlocked), so that the table
// ends with the goroutine.
//
// The new table starts as a copy of the process's. Sockets, pipes and
// files are closed in it at once, so that a connection, a pipe end (an
// exec status pipe: os/exec waits for its EOF) or a lock the process closes
// is not kept open by this thread; anonymous-inode fds stay (the Go
// runtime's epoll and eventfd, whose numbers it may use from any thread;
// pidfds), as do 0, 1 and 2. Nothing on this thread may log to anything
// but stderr: other numbers may now name other files.
//
// On the main thread it returns ErrMainThread and changes nothing: the
// caller should unlock and go on from another goroutine.
func PrivateFDTable() error {
	if unix.Gettid() == unix.Getpid() {
		// Go never ends the main thread: it would keep the table for good.
		return ErrMainThread
	}
	if err := unix.Unshare(unix.CLONE_FILES); err != nil {
		return err
	}
	dir, err := unix.Open("/proc/thread-self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	var close []int
	dents := make([]byte, 8192)
	link := make([]byte, 256)
	for {
		n, err := unix.Getdents(dir, dents)
		if err != nil {
			return err
		}
		if n <= 0 {
			break
		}
		_, _, names := unix.ParseDirent(dents[:n], -1, nil)
		for _, name := range names {
			fd, err := strconv.Atoi(name)
			if err != nil || fd <= 2 || fd == dir {
				continue
			}
			l, err := unix.Readlinkat(dir, name, link)
			if err != nil {
				continue
			}
			if !strings.HasPrefix(string(link[:l]), "anon_inode:") {
				close = append(close, fd)
			}
		}
	}
	for _, fd := range close {
		unix.Close(fd)
	}
	return nil
}

// readlinkString reads a link relative to dirfd.
func readlinkString(dirfd int, name string, buf []byte) (string, error) {
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// readFileAt reads a /proc file relative to dirfd, growing buf as needed.
func readFileAt(dirfd int, name string, buf []byte) ([]byte, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	total := 0
	for {
		if total == len(buf) {
			buf = append(buf, make([]byte, len(buf)+4096)...)
		}
		n, err := unix.Read(fd, buf[total:])
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf[:total], nil
		}
		total += n
	}
}
