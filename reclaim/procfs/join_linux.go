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

// joinOpenFiles adds what only a comparison of open files (kcmp
// KCMP_FILE) can tell: that an fd dup'ed from a watched one is watched too,
// and which slave fds held outside the master's holders are the very open
// file a master's holder has, as fork passes it on, rather than one a
// session opened. Both are asked only where they can change a verdict, so
// a machine with thousands of plain leaks pays nothing here.
func joinOpenFiles(snap *snapshot.Snapshot) {
	for _, p := range snap.Processes {
		shareWatched(p)
	}
	linkInheritedSlaves(snap)
}

// shareWatched marks Watched every PTY fd that is one open file with a
// watched fd of the same process. An epoll registration belongs to the open
// file, so a dup (Node's pty.open() hands out such copies) is as watched as
// the number that was registered; markWatched finds only the latter when
// both numbers are still open.
func shareWatched(p *snapshot.Process) {
	var watched []snapshot.PTYFD
	for _, f := range p.PTYFDs {
		if f.Watched {
			watched = append(watched, f)
		}
	}
	if len(watched) == 0 {
		return
	}
	for i := range p.PTYFDs {
		f := &p.PTYFDs[i]
		if f.Watched {
			continue
		}
		for _, w := range watched {
			if w.PTY != f.PTY || w.Side != f.Side {
				continue // one open file is one side of one PTY
			}
			if same, err := SameFile(p.PID, f.FD, p.PID, w.FD); err == nil && same {
				f.Watched = true
				break
			}
		}
	}
}

// slaveRef is one slave fd in the snapshot.
type slaveRef struct {
	proc *snapshot.Process
	i    int // index into proc.PTYFDs
}

// linkInheritedSlaves gives a File to each slave fd of a process that holds
// a PTY's slave but not its master when it is the same open file as a slave
// fd a holder of the master has (and the same File to that one). A
// session opens or is handed the slave as its terminal; a child that only
// inherited a leaked fd holds the parent's own open file. Classification
// decides from this; nothing here judges.
func linkInheritedSlaves(snap *snapshot.Snapshot) {
	masters := map[snapshot.PTYID]map[int]bool{}
	slaves := map[snapshot.PTYID][]slaveRef{}
	for _, p := range snap.Processes {
		for i, f := range p.PTYFDs {
			switch {
			case f.Side == snapshot.Master:
				if masters[f.PTY] == nil {
					masters[f.PTY] = map[int]bool{}
				}
				masters[f.PTY][p.PID] = true
			case !f.HungUp:
				slaves[f.PTY] = append(slaves[f.PTY], slaveRef{proc: p, i: i})
			}
		}
	}
	var next uint64
	for id, refs := range slaves {
		m := masters[id]
		if len(m) == 0 {
			continue
		}
		var own, others []slaveRef
		for _, r := range refs {
			if m[r.proc.PID] {
				own = append(own, r)
			} else {
				others = append(others, r)
			}
		}
		if len(own) == 0 || len(others) == 0 {
			continue
		}
		for _, o := range others {
			of := &o.proc.PTYFDs[o.i]
			for _, w := range own {
				wf := &w.proc.PTYFDs[w.i]
				same, err := SameFile(o.proc.PID, of.FD, w.proc.PID, wf.FD)
				if err != nil || !same {
					continue
				}
				if wf.File == 0 {
					next++
					wf.File = next
				}
				of.File = wf.File
				break
			}
		}
	}
}
