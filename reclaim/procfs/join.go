package procfs

import (
	"strconv"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// The joins: what the per-process scans found is combined across processes
// into the facts classification needs. The few answers only the kernel can
// give (which devpts a process sees, whether an fd was opened for writing,
// whether two fds are one open file) come through the kernel interface, so
// the joins themselves make no system call and are tested on plain data,
// as the macOS joins are on fixture bytes.

// procScan is what one process's scan found, before cross-process joins.
type procScan struct {
	proc  *snapshot.Process
	stat  Stat
	ptys  []snapshot.PTY // what this process's fds told about their PTYs
	pipes []pipeFD
	// status, once read for this process, so it is read at most once.
	status *Status
	// skipped says why some fd of this process was not examined (a file
	// a user's server serves, a copy that proved to be another file).
	skipped []string
}

type pipeFD struct {
	fd  int
	ino uint64
}

// kernel answers the joins' questions. Each answer is read from files the
// kernel serves (mountinfo, fdinfo) or from kcmp, never from a path a user
// controls, so no answer can wait on a user's file system server.
type kernel interface {
	// PTSInstance is the st_dev of the devpts mounted at pid's /dev/pts.
	PTSInstance(pid int) (uint64, bool)
	// Writable reports whether pid's fd has write access; true when unknown.
	Writable(pid, fd int) bool
	// SameFile reports whether the two fds are one open file (kcmp KCMP_FILE).
	SameFile(pid1, fd1, pid2, fd2 int) (bool, error)
}

// join builds the cross-process facts of snap from the per-process scans.
func join(snap *snapshot.Snapshot, scans []*procScan, k kernel) {
	for _, sc := range scans {
		if sc == nil {
			continue
		}
		for _, p := range sc.ptys {
			mergePTY(snap.PTYs, p)
		}
	}
	resolveCTTYs(scans, snap.PTYs, k)
	fillPipeWriters(scans, snap.PipeWriters, k)
	for _, p := range snap.Processes {
		shareWatched(p, k)
	}
	linkInheritedSlaves(snap, k)
}

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
	// Kernel facts from several copies: a slave is closed only if every
	// look said so, and a session seen once is there.
	switch {
	case p.KernelChecked && cur.KernelChecked:
		cur.SlaveClosed = cur.SlaveClosed && p.SlaveClosed
	case p.KernelChecked:
		cur.KernelChecked, cur.SlaveClosed = true, p.SlaveClosed
	}
	if cur.Session == 0 {
		cur.Session = p.Session
	}

}

// resolveCTTYs turns each process's tty_nr into a PTYID. tty_nr carries no
// devpts instance, so a host pts/3 and a container's pts/3 look alike. When
// only one instance has that index there is nothing to tell apart; when
// several do, the devpts mounted at the process's /dev/pts decides.
// Anything unresolved stays AnyInstance, which classification treats as
// live in every instance.
func resolveCTTYs(scans []*procScan, ptys map[snapshot.PTYID]*snapshot.PTY, k kernel) {
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
			if dev, ok := k.PTSInstance(sc.proc.PID); ok {
				id.Instance = dev
			}
		}
		sc.proc.CTTY = &id
	}
}

// fillPipeWriters lists, for each pipe some process is blocked reading,
// every process holding an fd with write access to it. An fd whose access
// is unknown counts as a writer: doubt never makes a process look stuck.
func fillPipeWriters(scans []*procScan, writers map[uint64][]int, k kernel) {
	wanted := map[uint64]bool{}
	for _, sc := range scans {
		if sc != nil && sc.proc.Blocked != nil {
			wanted[sc.proc.Blocked.Pipe] = true
		}
	}
	if len(wanted) == 0 {
		return
	}
	for _, sc := range scans {
		if sc == nil {
			continue
		}
		seen := map[uint64]bool{}
		for _, pf := range sc.pipes {
			if !wanted[pf.ino] || seen[pf.ino] {
				continue
			}
			if !k.Writable(sc.proc.PID, pf.fd) {
				continue
			}
			seen[pf.ino] = true
			writers[pf.ino] = append(writers[pf.ino], sc.proc.PID)
		}
	}
}

// shareWatched marks Watched every PTY fd that is one open file with a
// watched fd of the same process. An epoll registration belongs to the open
// file, so a dup (Node's pty.open() hands out such copies) is as watched as
// the number that was registered; the scan finds only the latter when both
// numbers are still open. kcmp is asked only in processes with a watched
// fd, so a machine with thousands of plain leaks pays nothing here.
func shareWatched(p *snapshot.Process, k kernel) {
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
			if same, err := k.SameFile(p.PID, f.FD, p.PID, w.FD); err == nil && same {
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
// decides from this; nothing here judges. kcmp is asked only for PTYs held
// both by a master's holder and by others.
func linkInheritedSlaves(snap *snapshot.Snapshot, k kernel) {
	masters := map[snapshot.PTYID]map[int]bool{}
	slaves := map[snapshot.PTYID][]slaveRef{}
	var ids []snapshot.PTYID // first-seen order, so File numbers are stable
	for _, p := range snap.Processes {
		for i, f := range p.PTYFDs {
			switch {
			case f.Side == snapshot.Master:
				if masters[f.PTY] == nil {
					masters[f.PTY] = map[int]bool{}
				}
				masters[f.PTY][p.PID] = true
			case !f.HungUp:
				if slaves[f.PTY] == nil {
					ids = append(ids, f.PTY)
				}
				slaves[f.PTY] = append(slaves[f.PTY], slaveRef{proc: p, i: i})
			}
		}
	}
	var next uint64
	for _, id := range ids {
		refs := slaves[id]
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
				same, err := k.SameFile(o.proc.PID, of.FD, w.proc.PID, wf.FD)
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
