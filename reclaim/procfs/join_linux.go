//go:build linux

package procfs

import (
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// mergePTY records what one fd told about a PTY, keeping the newest I/O time.
func mergePTY(ptys map[snapshot.PTYID]*snapshot.PTY, p snapshot.PTY) {
	cur, ok := ptys[p.ID]
	if !ok {
		p.Name = "pts/" + strconv.Itoa(p.ID.Index)
		ptys[p.ID] = &p
		return
	}
	if p.LastIO.After(cur.LastIO) {
		cur.LastIO = p.LastIO
	}
}

// resolveCTTYs turns each process's tty_nr into a PTYID. tty_nr carries no
// devpts instance, so a host pts/3 and a container's pts/3 look alike. When
// only one instance has that index there is nothing to tell apart; when
// several do, the devpts mounted at the process's /dev/pts decides. Anything unresolved stays
// AnyInstance, which classification treats as live in every instance.
func resolveCTTYs(scans []*procScan, ptys map[snapshot.PTYID]*snapshot.PTY, mounts *Mounts) {
	instances := map[int]int{}
	for id := range ptys {
		instances[id.Index]++
	}
	for _, sc := range scans {
		if sc == nil || sc.stat.TTYNr == 0 {
			continue
		}
		idx, ok := SlaveIndex(TTYDevice(sc.stat.TTYNr))
		if !ok {
			continue
		}
		id := snapshot.PTYID{Instance: snapshot.AnyInstance, Index: idx}
		if instances[idx] > 1 {
			if dev, ok := ptsInstance(sc.proc.PID, mounts); ok {
				id.Instance = dev
			}
		}
		sc.proc.CTTY = &id
	}
}

// fillPipeWriters lists, for each pipe some process is blocked reading,
// every process holding an fd with write access to it.
func fillPipeWriters(scans []*procScan, writers map[uint64][]int) {
	wanted := map[uint64]bool{}
	for _, sc := range scans {
		if sc != nil && sc.proc.Blocked != nil {
			wanted[sc.proc.Blocked.Pipe] = true
		}
	}
	if len(wanted) == 0 {
		return
	}
	s := newScanner(clock{}, 0, nil)
	for _, sc := range scans {
		if sc == nil {
			continue
		}
		seen := map[uint64]bool{}
		for _, pf := range sc.pipes {
			if !wanted[pf.ino] || seen[pf.ino] {
				continue
			}
			if !s.writable(sc.proc.PID, pf.fd) {
				continue
			}
			seen[pf.ino] = true
			writers[pf.ino] = append(writers[pf.ino], sc.proc.PID)
		}
	}
}

// writable reports whether pid's fd has write access. When that cannot be
// read (the fd closed, no rights) it answers true: an unknown writer must
// count as a writer, so doubt never makes a process look stuck.
func (s *scanner) writable(pid, fd int) bool {
	pdir, err := unix.Open("/proc/"+strconv.Itoa(pid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return true
	}
	defer unix.Close(pdir)
	fi, err := s.readFDInfo(pdir, fd)
	if err != nil {
		return true
	}
	return fi.Writable()
}
