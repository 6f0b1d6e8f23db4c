//go:build darwin

package peer

import (
	"net"

	"golang.org/x/sys/unix"
)

// FromConn returns the effective uid and gid of the process at the other
// end of a Unix socket (LOCAL_PEERCRED), recorded by the kernel at connect
// time. macOS has no user namespaces: uid 0 is root.
func FromConn(c *net.UnixConn) (Caller, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var cl Caller
	cerr := error(nil)
	err = raw.Control(func(fd uintptr) {
		var cred *unix.Xucred
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if cerr == nil {
			cl.UID, cl.GID = int(cred.Uid), -1
			if cred.Ngroups > 0 {
				cl.GID = int(cred.Groups[0])
			}
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return Caller{}, err
	}
	cl.Root = cl.UID == 0
	return cl, nil
}

// MayAct is not implemented on macOS yet: there only the selection's check
// of the real uid holds (effective and saved uids would come from
// sysctl kern.proc.pid). Linux is where this rule is enforced.
func MayAct(Caller, int, uint64) error { return nil }
