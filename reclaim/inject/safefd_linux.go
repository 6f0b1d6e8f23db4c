//go:build linux

package inject

// Reference copies of a target's fds, taken so that nothing can wait on a
// user's file system server. Between the scan and the release the fd number
// may have been reused by a FUSE file, and closing a copy of one sends its
// server a flush that need not ever be answered (the closer then sleeps in
// D state beyond SIGKILL). So each fd is first proven, from fdinfo and the
// mount table only, to be a PTY on a kernel file system (procfs.ProveFD),
// and the copy is taken on a thread with a private fd table and checked
// there (statx from cached attributes only) before it is moved to ours: a
// copy that fails the check never enters the table everything else uses.

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

var errHostileCopy = errors.New("the fd changed into a file a user's server serves; its copy was dropped on a thread holding nothing else")

// copier takes proven copies of one target's fds.
type copier struct {
	pid, pidfd int
	req        chan copyReq
	// threadFD is a pidfd on the helper thread, from which our own copy is
	// taken; -1 when the kernel has no thread pidfds (before 6.9), and the
	// copies are then taken directly, checked all the same.
	threadFD int
}

type copyReq struct {
	fd    int
	proof procfs.FDProof
	reply chan copyReply
}

type copyReply struct {
	fd  int // in the helper's table
	err error
}

// newCopier starts the helper thread. close must be called.
func newCopier(pid, pidfd int) *copier {
	c := &copier{pid: pid, pidfd: pidfd, req: make(chan copyReq), threadFD: -1}
	ready := make(chan int)
	go c.helper(ready)
	if tid := <-ready; tid > 0 {
		if fd, err := unix.PidfdOpen(tid, unix.PIDFD_THREAD); err == nil {
			c.threadFD = fd
		}
	}
	return c
}

// helper runs on its own thread with a private fd table (see
// procfs.PrivateFDTable). It holds each copy until we have taken ours.
func (c *copier) helper(ready chan<- int) {
	runtime.LockOSThread() // never unlocked: the table ends with the thread
	err := procfs.PrivateFDTable()
	if errors.Is(err, procfs.ErrMainThread) {
		runtime.UnlockOSThread()
		go c.helper(ready)
		return
	}
	if err != nil {
		close(ready)
		return
	}
	ready <- unix.Gettid()
	held := -1
	for r := range c.req {
		if held >= 0 {
			unix.Close(held) // proven a PTY on a kernel file system
			held = -1
		}
		if r.reply == nil {
			continue // "we have taken ours"
		}
		cp, err := unix.PidfdGetfd(c.pidfd, r.fd, 0)
		if err != nil {
			r.reply <- copyReply{fd: -1, err: err}
			continue
		}
		var st unix.Statx_t
		if err := procfs.StatxNoSync(cp, &st); err != nil || r.proof.Check(&st) != nil {
			r.reply <- copyReply{fd: -1, err: errHostileCopy}
			procfs.DisposeHostile(cp) // may never return; holds nothing else
			return
		}
		held = cp
		r.reply <- copyReply{fd: cp}
	}
	if held >= 0 {
		unix.Close(held)
	}
}

// copy returns our own copy of the target's fd, proven first.
func (c *copier) copy(fd int) (int, error) {
	proof, err := procfs.ProveFD(c.pid, fd)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return -1, unix.EBADF
		}
		return -1, fmt.Errorf("refusing to touch it: %w", err)
	}
	if c.threadFD < 0 {
		return c.copyDirect(fd, proof)
	}
	reply := make(chan copyReply, 1)
	c.req <- copyReq{fd: fd, proof: proof, reply: reply}
	rep := <-reply
	if rep.err != nil {
		if errors.Is(rep.err, errHostileCopy) {
			// The helper is gone; later fds go the direct way.
			unix.Close(c.threadFD)
			c.threadFD = -1
		}
		return -1, rep.err
	}
	ours, err := unix.PidfdGetfd(c.threadFD, rep.fd, 0)
	c.req <- copyReq{} // the helper may drop its copy now
	return ours, err
}

// copyDirect copies into our own table and checks the copy there. A copy
// that fails the check cannot be closed without risk, so it is closed on a
// goroutine of its own, which is all that can then be stuck.
func (c *copier) copyDirect(fd int, proof procfs.FDProof) (int, error) {
	return copyChecked(c.pidfd, fd, proof.Check)
}

// copyChecked copies fd of the process behind pidfd into our table and
// checks the copy there with check, on a statx from cached attributes. A
// copy that fails is closed on a goroutine of its own.
func copyChecked(pidfd, fd int, check func(*unix.Statx_t) error) (int, error) {
	cp, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Statx_t
	if err := procfs.StatxNoSync(cp, &st); err != nil || check(&st) != nil {
		go unix.Close(cp)
		return -1, errHostileCopy
	}
	return cp, nil
}

// copyReplacement copies the replacement the target has just opened, after
// proving it is what the method puts in place without touching its file:
// /dev/null from fdinfo and the mount table (a FUSE file bind-mounted on
// /dev/null shows the same link text), a pipe or socket from its link
// text, which for those the kernel writes and no path can imitate.
func copyReplacement(pid, pidfd, fd int, m Method) (cp int, link string, err error) {
	link, err = os.Readlink(procPath(pid, "fd/"+strconv.Itoa(fd)))
	if err != nil {
		return -1, "", err
	}
	switch m {
	case MethodDevNull:
		mnt, err := procfs.ProveDevNull(pid, fd)
		if err != nil {
			return -1, link, fmt.Errorf("refusing to copy it: %w", err)
		}
		cp, err = copyChecked(pidfd, fd, func(st *unix.Statx_t) error { return procfs.CheckDevNull(mnt, st) })
		return cp, link, err
	case MethodHangup, MethodQuiet:
		// Both are one end of a socket pair (hangup's shut down for
		// reading); misbehaves checks on the copy which it behaves as.
		if !strings.HasPrefix(link, "socket:[") {
			return -1, link, fmt.Errorf("it is %q, not a socket", link)
		}
		cp, err = unix.PidfdGetfd(pidfd, fd, 0)
		return cp, link, err
	}
	return -1, link, fmt.Errorf("no replacement for method %s", m)
}

func (c *copier) close() {
	close(c.req)
	if c.threadFD >= 0 {
		unix.Close(c.threadFD)
	}
}
