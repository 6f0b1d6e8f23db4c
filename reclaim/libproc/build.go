package libproc

import (
	"fmt"
	"sort"
	"time"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Majors are the device majors of the PTY nodes. xnu assigns them at boot
// (ptmx usually 15, ttys usually 16), so they are learnt by stat at run time.
type Majors struct {
	PTMX uint32
	TTYS uint32
	// TTYSKnown is false when no /dev/ttysNNN node existed to stat. Slaves
	// are then recognised by path alone.
	TTYSKnown bool
}

// FDDetail is what was read about one fd of a process.
type FDDetail struct {
	FD   int
	Type uint32 // PROX_FDTYPE_*
	// Vnode is the PROC_PIDFDVNODEPATHINFO answer, nil when not read.
	Vnode *VnodeFD
	// Revoked marks a vnode fd whose PROC_PIDFDVNODEPATHINFO failed with
	// ENOENT: xnu revoked the vnode (lsof prints "(revoked)"). On a PTY this
	// is a slave whose session leader exited; it no longer pins the PTY.
	Revoked bool
	// Watched is true when a live READ/WRITE knote of the same process has
	// this fd as ident.
	Watched bool
}

// ptyName is how macOS names PTY index n: its slave node /dev/ttysNNN.
func ptyName(index int) string { return fmt.Sprintf("ttys%03d", index) }

// isTTYSName reports whether name is a PTY slave node name, "ttys" and
// exactly three digits (the pool tops out at 999).
func isTTYSName(name string) bool {
	if len(name) != 7 || name[:4] != "ttys" {
		return false
	}
	for _, c := range name[4:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isTTYSPath reports whether path is /dev/ttysNNN.
func isTTYSPath(path string) bool {
	const dev = "/dev/"
	return len(path) > len(dev) && path[:len(dev)] == dev && isTTYSName(path[len(dev):])
}

// CountTTYS counts the PTY slave nodes among /dev entry names. xnu creates
// /dev/ttysNNN when a PTY is allocated and removes it when freed, so this is
// the number of PTYs in use; no sysctl reports it.
func CountTTYS(names []string) int {
	n := 0
	for _, name := range names {
		if isTTYSName(name) {
			n++
		}
	}
	return n
}

// ptyOf tells whether a vnode is a PTY end and which. Only the device number
// tells masters apart: every master reads back as /dev/ptmx with the same
// inode, and minor(rdev) is the PTY index.
func ptyOf(v *VnodeFD, m Majors) (snapshot.Side, int, bool) {
	if v == nil || !v.Stat.IsCharDevice() {
		return 0, 0, false
	}
	major, minor := Major(v.Stat.Rdev), int(Minor(v.Stat.Rdev))
	switch {
	case major == m.PTMX:
		return snapshot.Master, minor, true
	case m.TTYSKnown && major == m.TTYS:
		return snapshot.Slave, minor, true
	case !m.TTYSKnown && isTTYSPath(v.Path):
		return snapshot.Slave, minor, true
	}
	return 0, 0, false
}

// ctty returns the controlling terminal when it is a PTY slave. e_tdev holds
// NODEV unless P_CONTROLT is set (proc_info.c, proc_pidbsdinfo).
func ctty(bsd BSDInfo, m Majors) *snapshot.PTYID {
	if bsd.TDev == noDev || !m.TTYSKnown || Major(bsd.TDev) != m.TTYS {
		return nil
	}
	return &snapshot.PTYID{Instance: 0, Index: int(Minor(bsd.TDev))}
}

// stateString maps p_stat to the one-letter states ps uses.
func stateString(status uint32) string {
	switch status {
	case statIdle:
		return "I"
	case statRun:
		return "R"
	case statSleep:
		return "S"
	case statStop:
		return "T"
	case statZombie:
		return "Z"
	}
	return "?"
}

// startTime returns the process start as microseconds since the epoch (the
// macOS snapshot.Process.StartTime) and as wall-clock time.
func startTime(bsd BSDInfo) (uint64, time.Time) {
	usec := bsd.StartSec*1_000_000 + bsd.StartUsec
	return usec, time.Unix(int64(bsd.StartSec), int64(bsd.StartUsec)*1000)
}

// buildProcess maps decoded libproc structs to a snapshot.Process. It sets
// everything libproc tells; SID, Threads and Blocked are filled by the caller,
// which has read them separately.
func buildProcess(bsd BSDInfo, path string, fds []FDDetail, majors Majors) *snapshot.Process {
	start, started := startTime(bsd)
	comm := bsd.Name // the registered name is up to 32 chars, pbi_comm only 15
	if comm == "" {
		comm = bsd.Comm
	}
	p := &snapshot.Process{
		PID:       int(bsd.PID),
		PPID:      int(bsd.PPID),
		StartTime: start,
		Started:   started,
		UID:       int(bsd.UID),
		Comm:      comm,
		Exe:       path,
		State:     stateString(bsd.Status),
		CTTY:      ctty(bsd, majors),
	}
	// PT_ATTACH reparents the tracee to its tracer and PT_TRACE_ME is asked
	// of the parent (xnu bsd/kern/mach_process.c), so a traced process's
	// parent is its tracer.
	if bsd.Flags&ProcFlagTraced != 0 {
		p.TracerPID = int(bsd.PPID)
	}
	p.PTYFDs = ptyFDs(fds, majors)
	return p
}

// ptyFDs picks the PTY fds out of fds, sorted by fd. Revoked fds are skipped:
// they no longer pin a PTY.
func ptyFDs(fds []FDDetail, majors Majors) []snapshot.PTYFD {
	var out []snapshot.PTYFD
	for _, fd := range fds {
		if fd.Revoked || fd.Type != FDTypeVnode {
			continue
		}
		side, index, ok := ptyOf(fd.Vnode, majors)
		if !ok {
			continue
		}
		out = append(out, snapshot.PTYFD{
			FD:      fd.FD,
			Side:    side,
			PTY:     snapshot.PTYID{Instance: 0, Index: index},
			Proven:  true, // the identity comes from the fd's own rdev
			Watched: fd.Watched,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FD < out[j].FD })
	return out
}

// MarkMasterless marks as hung up the slave fds of every PTY whose master
// no process holds: xnu has no "(deleted)" mark for a slave whose master
// closed, but keeps the slot until the slave closes too (ptmx_free_ioctl),
// so such a slave pins it alone. Masters cannot be reopened once closed
// (/dev/ptmx always clones a new index), so a slave seen without a master
// stays without one. It does nothing when any process could not be read:
// the master could be there. It returns how many fds it marked.
func MarkMasterless(procs []*snapshot.Process, unreadable int) int {
	if unreadable > 0 {
		return 0
	}
	masters := map[snapshot.PTYID]bool{}
	for _, p := range procs {
		for _, f := range p.PTYFDs {
			if f.Side == snapshot.Master {
				masters[f.PTY] = true
			}
		}
	}
	n := 0
	for _, p := range procs {
		for i := range p.PTYFDs {
			f := &p.PTYFDs[i]
			if f.Side == snapshot.Slave && !masters[f.PTY] && !f.HungUp {
				f.HungUp = true
				n++
			}
		}
	}
	return n
}

// countRevoked counts the revoked vnode fds, for the snapshot notes.
func countRevoked(fds []FDDetail) int {
	n := 0
	for _, fd := range fds {
		if fd.Revoked {
			n++
		}
	}
	return n
}

// watchedFDs returns the fds that some live READ/WRITE knote watches. Every
// kqueue of one process reports knotes whose idents are that process's fds.
func watchedFDs(knotes []Knote) map[int]bool {
	out := make(map[int]bool)
	for _, k := range knotes {
		if k.Ident > uint64(^uint32(0)>>1) {
			continue // not an fd number
		}
		if k.WatchesFD(int(k.Ident)) {
			out[int(k.Ident)] = true
		}
	}
	return out
}

// newestTime returns the later of two (sec, nsec) times; zero when both are
// zero (unknown, which the model treats as recent).
func newestTime(aSec, aNsec, bSec, bNsec int64) time.Time {
	if aSec == 0 && aNsec == 0 && bSec == 0 && bNsec == 0 {
		return time.Time{}
	}
	a, b := time.Unix(aSec, aNsec), time.Unix(bSec, bNsec)
	if b.After(a) {
		return b
	}
	return a
}
