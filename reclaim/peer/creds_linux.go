//go:build linux

package peer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

// FromConn returns who is at the other end of a Unix socket. uid, gid and
// pid are what the kernel recorded at connect time (SO_PEERCRED: the
// effective ids), so a request cannot forge them. The user namespace is
// read through a pidfd of that very process (SO_PEERPIDFD), so that a peer
// that exits and has its pid reused cannot lend us another process's.
func FromConn(c *net.UnixConn) (Caller, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var cred *unix.Ucred
	pidfd, cerr, pidfdErr := -1, error(nil), error(nil)
	err = raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if cerr == nil {
			pidfd, pidfdErr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return Caller{}, err
	}
	cl := Caller{UID: int(cred.Uid), GID: int(cred.Gid), PID: int(cred.Pid)}
	if pidfdErr != nil {
		// Kernels before 6.5 lack SO_PEERPIDFD; a pidfd taken now pins the
		// process from here on, which is the best they allow.
		if pidfd, err = unix.PidfdOpen(cl.PID, 0); err != nil {
			return Caller{}, fmt.Errorf("the connecting process %d is gone: %w", cl.PID, err)
		}
	}
	defer unix.Close(pidfd)
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/user", cl.PID))
	if err != nil {
		return Caller{}, fmt.Errorf("cannot read the user namespace of the connecting process: %w", err)
	}
	// The pidfd still names a live process with that pid: the link we just
	// read was that process's.
	if pid, err := pidfdPID(pidfd); err != nil || pid != cl.PID {
		return Caller{}, errors.New("the connecting process exited before it could be checked")
	}
	cl.UserNS = ns
	own, err := os.Readlink("/proc/self/ns/user")
	if err != nil {
		return Caller{}, err
	}
	cl.Root = cl.UID == 0 && ns == own
	return cl, nil
}

// pidfdPID reads the pid a pidfd names from its fdinfo ("Pid:\t-1" once the
// process has exited).
func pidfdPID(pidfd int) (int, error) {
	b, err := os.ReadFile("/proc/self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return -1, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return -1, errors.New("no Pid in a pidfd's fdinfo")
}

// MayAct reports why the caller could not ptrace pid herself, as the
// kernel's PTRACE_MODE_ATTACH_REALCREDS rule would decide, or nil when she
// could. It reads only /proc, never the target itself, and runs before
// planning and again while the target is frozen (when no thread can change
// its credentials). start is the start time the scan saw: a pid reused
// since then is refused.
//
// Stricter than the kernel on purpose: every thread's real, effective,
// saved and fs uid and gid must all be the caller's; and the caller is
// taken to hold no capabilities (she may have exec'd a program with file
// capabilities after connecting, so hers cannot be known), so a target
// holding any is refused.
func MayAct(cl Caller, pid int, start uint64) error {
	if cl.Root {
		return nil
	}
	dir := "/proc/" + strconv.Itoa(pid)
	ns, err := os.Readlink(dir + "/ns/user")
	if err != nil {
		return fmt.Errorf("pid %d: cannot read its user namespace (it may have exited)", pid)
	}
	if ns != cl.UserNS {
		return fmt.Errorf("pid %d runs in another user namespace than yours", pid)
	}
	// A process that is not dumpable has its /proc files (not the /proc/PID
	// directory itself) owned by the root of its user namespace. When the
	// caller is that root, ownership cannot tell the two apart: refuse.
	uidMap, err1 := os.ReadFile(dir + "/uid_map")
	gidMap, err2 := os.ReadFile(dir + "/gid_map")
	if err1 != nil || err2 != nil {
		return fmt.Errorf("pid %d: cannot read its user namespace's id maps (it may have exited)", pid)
	}
	if cl.UID == nsRoot(uidMap) || cl.GID == nsRoot(gidMap) {
		return fmt.Errorf("pid %d: you are the root of its user namespace, where whether it is dumpable cannot be told from /proc", pid)
	}
	tasks, err := os.ReadDir(dir + "/task")
	if err != nil {
		return fmt.Errorf("pid %d: cannot list its threads (it may have exited)", pid)
	}
	for _, t := range tasks {
		if err := threadMayBeTraced(cl, pid, dir+"/task/"+t.Name()+"/status"); err != nil {
			return err
		}
	}
	// Everything above was read from the process the scan saw.
	if st, err := procfs.StartTime(pid); err != nil || st != start {
		return fmt.Errorf("pid %d exited or is another process now", pid)
	}
	return nil
}

// threadMayBeTraced checks one thread's credentials and dumpability.
func threadMayBeTraced(cl Caller, pid int, statusPath string) error {
	f, err := os.Open(statusPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil // a thread that exited meanwhile
		}
		return fmt.Errorf("pid %d: cannot read a thread's status: %v", pid, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("pid %d: %v", pid, err)
	}
	b := make([]byte, 8192)
	n, err := f.Read(b)
	if err != nil {
		return fmt.Errorf("pid %d: cannot read a thread's status: %v", pid, err)
	}
	c, err := procfs.ParseCreds(b[:n])
	if err != nil {
		return fmt.Errorf("pid %d: %v", pid, err)
	}
	for i := range 4 {
		if c.UIDs[i] != cl.UID || c.GIDs[i] != cl.GID {
			return fmt.Errorf("pid %d runs with ids that are not all yours (uid %d %d %d %d, gid %d %d %d %d: setuid, setgid or changed ids); you could not ptrace it yourself",
				pid, c.UIDs[0], c.UIDs[1], c.UIDs[2], c.UIDs[3], c.GIDs[0], c.GIDs[1], c.GIDs[2], c.GIDs[3])
		}
	}
	if c.CapPrm != 0 || c.CapEff != 0 {
		return fmt.Errorf("pid %d holds capabilities (CapPrm %016x, CapEff %016x); you could not ptrace it yourself", pid, c.CapPrm, c.CapEff)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != cl.UID || int(st.Gid) != cl.GID {
		return fmt.Errorf("pid %d is not dumpable (PR_SET_DUMPABLE 0, or it changed ids); you could not ptrace it yourself", pid)
	}
	return nil
}
