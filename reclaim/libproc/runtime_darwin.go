//go:build darwin

package libproc

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// What the inspector route and the revoke rung read through libproc.

// Path is the executable path of pid, "" when unreadable.
func Path(pid int) string {
	l, err := loadLib()
	if err != nil {
		return ""
	}
	return l.path(pid)
}

// TCPSockets reads every TCP socket pid holds.
func TCPSockets(pid int) ([]TCPSocket, error) {
	l, err := loadLib()
	if err != nil {
		return nil, fmt.Errorf("libproc: %w", err)
	}
	fds, err := l.listFDs(pid)
	if err != nil {
		return nil, fmt.Errorf("proc_pidinfo(%d, PROC_PIDLISTFDS): %w", pid, err)
	}
	var out []TCPSocket
	buf := make([]byte, sizeSocketFDInfo)
	for _, fd := range fds {
		if fd.Type != FDTypeSocket {
			continue
		}
		n, _ := l.procPIDFDInfo(pid, int(fd.FD), fdSocketInfo, buf)
		if n <= 0 {
			continue // closed meanwhile
		}
		if s, ok := DecodeSocketFDInfo(buf[:n]); ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// Stat reads fd of pid as a vnode: what it is now and its vinfo_stat
// (device, inode, rdev), for comparing with what the program sees.
func (p *FDProbe) Stat(pid, fd int) (FDNow, VinfoStat, error) {
	v, err := p.l.vnodePath(pid, fd)
	if err != nil {
		now, lerr := p.Look(pid, fd)
		if lerr != nil {
			return FDNow{}, VinfoStat{}, lerr
		}
		return now, VinfoStat{}, nil
	}
	return DescribeVnode(v, p.majors, p.nullRdev), v.Stat, nil
}

// TTYSMajor is the major of the /dev/ttysNNN nodes, learnt by stat; false
// when no PTY node exists to stat.
func (p *FDProbe) TTYSMajor() (uint32, bool) { return p.majors.TTYS, p.majors.TTYSKnown }

// MasterHolders reads every process's fds again and returns, per PTY
// index asked about, the processes holding its master. unreadable counts
// the processes whose fds could not be read: with any, an empty answer
// proves nothing.
func (p *FDProbe) MasterHolders(indices []int) (map[int][]int, int, error) {
	want := map[int]bool{}
	for _, i := range indices {
		want[i] = true
	}
	pids, err := p.l.listAllPIDs()
	if err != nil {
		return nil, 0, err
	}
	out := map[int][]int{}
	unreadable := 0
	for _, pid := range pids {
		fds, err := p.l.listFDs(pid)
		switch {
		case errors.Is(err, syscall.ESRCH):
			continue
		case err != nil:
			unreadable++
			continue
		}
		for _, fd := range fds {
			if fd.Type != FDTypeVnode {
				continue
			}
			v, err := p.l.vnodePath(pid, int(fd.FD))
			if err != nil {
				continue // closed or revoked meanwhile: pins nothing
			}
			if side, index, ok := ptyOf(&v, p.majors); ok && side == snapshot.Master && want[index] {
				out[index] = append(out[index], pid)
			}
		}
	}
	return out, unreadable, nil
}

// PortListeners reads every process's sockets and returns the pids holding
// a TCP listener that takes connections to 127.0.0.1:port (bound to it or
// to a wildcard), and how many processes could not be read: with any, an
// answer without a foreign listener proves nothing.
func PortListeners(port int) (map[int]bool, int, error) {
	l, err := loadLib()
	if err != nil {
		return nil, 0, fmt.Errorf("libproc: %w", err)
	}
	pids, err := l.listAllPIDs()
	if err != nil {
		return nil, 0, err
	}
	out := map[int]bool{}
	unreadable := 0
	buf := make([]byte, sizeSocketFDInfo)
	for _, pid := range pids {
		fds, err := l.listFDs(pid)
		switch {
		case errors.Is(err, syscall.ESRCH):
			continue
		case err != nil:
			unreadable++
			continue
		}
		for _, fd := range fds {
			if fd.Type != FDTypeSocket {
				continue
			}
			n, _ := l.procPIDFDInfo(pid, int(fd.FD), fdSocketInfo, buf)
			if n <= 0 {
				continue
			}
			if s, ok := DecodeSocketFDInfo(buf[:n]); ok && s.ListensOn(port) {
				out[pid] = true
			}
		}
	}
	return out, unreadable, nil
}
