//go:build linux

package procfs

import (
	"strconv"

	"golang.org/x/sys/unix"
)

// liveKernel answers the joins' questions on this machine.
type liveKernel struct {
	mounts *Mounts  // the scan's mount tables, shared by every process of a namespace
	s      *scanner // buffers for fdinfo
}

func newLiveKernel(mounts *Mounts) *liveKernel {
	return &liveKernel{mounts: mounts, s: newScanner(clock{}, 0, nil)}
}

func (k *liveKernel) PTSInstance(pid int) (uint64, bool) { return ptsInstance(pid, k.mounts) }

// Writable answers true when the fd cannot be read (closed, no rights).
func (k *liveKernel) Writable(pid, fd int) bool {
	pdir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true
	}
	defer unix.Close(pdir)
	fi, err := k.s.readFDInfo(pdir, fd)
	if err != nil {
		return true
	}
	return fi.Writable()
}

func (k *liveKernel) SameFile(pid1, fd1, pid2, fd2 int) (bool, error) {
	return SameFile(pid1, fd1, pid2, fd2)
}
