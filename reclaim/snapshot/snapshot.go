// Package snapshot holds the read-only, platform-neutral view of the machine
// that every later stage works from: processes, their PTY fds, the PTYs' idle
// times, and the pipe facts needed to prove a child is stuck.
//
// The platform readers (Linux /proc, macOS libproc) fill it; classification,
// planning and reporting read it and never touch the system themselves.
package snapshot

import (
	"context"
	"time"
)

// Source takes a snapshot of the machine. Implementations are per platform.
type Source interface {
	Take(ctx context.Context, opts Options) (*Snapshot, error)
	// Pool reads only the PTY pool, cheaply.
	Pool() (Pool, error)
}

// Options tune what a snapshot reads. Every process's fds are always read:
// another process's slave fd or pipe write end decides whether a PTY is
// live or a child stuck, so no scan may be narrowed to a few pids.
type Options struct {
	// OrphanMinAge skips the blocked-read probes of processes younger than
	// this: they cannot be reported as orphans anyway.
	OrphanMinAge time.Duration
	// Nodes asks whether these PTYs' slave nodes are gone (Snapshot.NodesGone).
	Nodes []PTYNode
}

// PTYNode names a PTY's slave node: the PTY, and a process whose /dev/pts
// shows it.
type PTYNode struct {
	Holder int
	PTY    PTYID
}

// Snapshot is one consistent-enough reading of the machine. Processes and fds
// come and go while it is taken; anything that vanished mid-read is absent.
type Snapshot struct {
	Taken time.Time
	Pool  Pool
	// Self is the pid of the process that took the snapshot.
	Self int
	// Processes, sorted by pid.
	Processes []*Process
	// PTYs holds what is known about each PTY that some fd refers to.
	PTYs map[PTYID]*PTY
	// PipeWriters maps a pipe (Linux: its inode; macOS: the read end's
	// pipe_handle) to the pids holding an fd with write access to it. Only pipes some process is blocked reading are filled in.
	PipeWriters map[uint64][]int
	// Unreadable counts processes whose fds could not be read (permissions).
	Unreadable int
	// NodesGone holds, for each PTY of Options.Nodes, whether its slave
	// node is gone (Linux: the kernel removes it when the master's open
	// file is released, so no process holds the master any more, readable
	// or not). A node still there proves nothing: a new PTY may have taken
	// the index, with the same inode number. Absent: not known.
	NodesGone map[PTYID]bool
	// Notes are platform remarks a person should see (for example
	// "not root: other users' processes are not visible").
	Notes []string
}

// Pool is the system-wide PTY pool.
type Pool struct {
	InUse int `json:"in_use"`
	Limit int `json:"limit"`
}

// PTYID names one PTY: the devpts instance it belongs to and its index.
// Instance is the st_dev of the devpts mount on Linux (a container has its own)
// and 0 on macOS, which has a single pool.
type PTYID struct {
	Instance uint64
	Index    int
}

// AnyInstance as a PTYID.Instance means "this index in an unknown instance".
// It is used for controlling terminals whose instance could not be resolved,
// and matches every instance, so that doubt always errs towards "live".
const AnyInstance uint64 = 0

// Matches reports whether id names p, treating AnyInstance as a wildcard.
func (id PTYID) Matches(p PTYID) bool {
	if id.Index != p.Index {
		return false
	}
	return id.Instance == AnyInstance || p.Instance == AnyInstance || id.Instance == p.Instance
}

// PTY is what the snapshot knows about one PTY beyond its fds.
type PTY struct {
	ID PTYID
	// LastIO is the newest of the slave node's atime and mtime: the last read
	// or write on the slave side (8 s granularity on Linux, 1 s on macOS).
	// Zero when unknown, which counts as "recent".
	LastIO time.Time
	// Name is how a person knows it: "pts/3" on Linux, "ttys003" on macOS.
	Name string
	// Kernel facts about the whole machine, asked of a copy of a master fd
	// (Linux, as root); they hold for every process, readable or not, so
	// processes this scan could not read cannot hide a session from them.
	// KernelChecked says they were read; the zero values prove nothing.
	KernelChecked bool
	// SlaveClosed: no fd of the slave is open anywhere (the master polls
	// POLLHUP: a slave was opened and its last opener closed it). A slave
	// never opened does not poll so, and stays unproven.
	SlaveClosed bool
	// Session is the session whose controlling terminal this PTY is
	// (TIOCGSID on the master), 0 when none.
	Session int
}

// Side is which end of a PTY an fd holds.
type Side int

// The two ends of a PTY.
const (
	Master Side = iota + 1
	Slave
)

func (s Side) String() string {
	switch s {
	case Master:
		return "master"
	case Slave:
		return "slave"
	}
	return "unknown"
}

// PTYFD is one fd of a process that refers to a PTY.
type PTYFD struct {
	FD   int
	Side Side
	PTY  PTYID
	// Proven is true when the PTY identity was established exactly (Linux:
	// TIOCGPTPEER on a copy of the master, or fstat of the slave). False means
	// the instance was inferred, so the fd must not be acted upon.
	Proven bool
	// HungUp marks a slave whose master is already closed (Linux
	// "/dev/pts/N (deleted)"). It still pins the PTY. On macOS, where
	// nothing names a closed master, it is set when a scan that read every
	// process found no fd on the master (xnu frees the slot only when both
	// ends are closed); slaves xnu revoked at a session leader's exit are
	// not PTY fds at all.
	HungUp bool
	// Watched is true when the holder still has the fd registered in one of
	// its epoll (Linux) or kqueue (macOS) sets, confirmed exactly.
	Watched bool
	// File names the open file behind the fd where that was compared
	// (Linux: kcmp KCMP_FILE): fds with the same non-zero File, in any
	// process, are one open file, as an inherited or dup'ed fd is.
	// Different values and zero (not compared) prove nothing.
	File uint64
}

// BlockedRead says a single-threaded process is blocked in read() on a pipe.
type BlockedRead struct {
	FD   int
	Pipe uint64 // pipe identity: Linux inode, macOS read end's pipe_handle
	// SignalHandlers is true when a signal the process catches is not
	// blocked: a handler could then run and write to the pipe (the self-pipe
	// pattern), so the read is not proven to be stuck.
	SignalHandlers bool
}

// Process is one process and the facts about it that matter here.
type Process struct {
	PID  int
	PPID int
	SID  int
	// StartTime identifies the process together with PID (pids are reused).
	// Linux: clock ticks since boot (stat field 22); macOS: microseconds
	// since the epoch.
	StartTime uint64
	// Started is StartTime as wall-clock time, for ages.
	Started time.Time
	UID     int
	Comm    string
	Exe     string
	State   string
	Threads int
	// CTTY is the controlling terminal when it is a PTY slave.
	CTTY *PTYID
	// Kernel is true for kernel threads.
	Kernel bool
	// TracerPID is the pid of a process tracing this one, 0 if none.
	TracerPID int
	// Seccomp is the seccomp mode: 0 none, 1 strict, 2 filter.
	Seccomp int
	// PTYFDs are the fds referring to PTYs, sorted by fd.
	PTYFDs []PTYFD
	// Blocked is set when the process is blocked reading a pipe.
	Blocked *BlockedRead
	// Unreadable is true when the process's fds could not be read.
	Unreadable bool
	// InPlaceRefused, when not empty, says why fds cannot be released inside
	// this process (macOS: "hardened runtime: task_for_pid refused"). Empty
	// means in-place release may be attempted.
	InPlaceRefused string
}

// Key is a process identity that survives pid reuse.
type Key struct {
	PID       int
	StartTime uint64
}

// Key returns the identity of p.
func (p *Process) Key() Key { return Key{PID: p.PID, StartTime: p.StartTime} }

// Process returns the process with the given pid, or nil.
func (s *Snapshot) Process(pid int) *Process {
	lo, hi := 0, len(s.Processes)
	for lo < hi {
		m := (lo + hi) / 2
		switch p := s.Processes[m]; {
		case p.PID == pid:
			return p
		case p.PID < pid:
			lo = m + 1
		default:
			hi = m
		}
	}
	return nil
}

// HeldPTYs counts the distinct PTYs the process holds an fd on: a master
// and its slave, or two dups of one fd, count once.
func (p *Process) HeldPTYs() int {
	seen := map[PTYID]bool{}
	for _, f := range p.PTYFDs {
		seen[f.PTY] = true
	}
	return len(seen)
}
