//go:build darwin

package daemon

import (
	"net"

	"golang.org/x/sys/unix"
)

// peerCaller returns the effective uid and gid of the process at the other
// end of a Unix socket (LOCAL_PEERCRED), recorded by the kernel at connect
// time. macOS has no user namespaces: uid 0 is root.
func peerCaller(c *net.UnixConn) (caller, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return caller{}, err
	}
	var cl caller
	cerr := error(nil)
	err = raw.Control(func(fd uintptr) {
		var cred *unix.Xucred
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
		if cerr == nil {
			cl.uid, cl.gid = int(cred.Uid), -1
			if cred.Ngroups > 0 {
				cl.gid = int(cred.Groups[0])
			}
		}
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		return caller{}, err
	}
	cl.root = cl.uid == 0
	return cl, nil
}

// mayAct is not implemented on macOS yet: there only the selection's check
// of the real uid holds (effective and saved uids would come from
// sysctl kern.proc.pid). Linux is where this rule is enforced.
func mayAct(caller, int, uint64) error { return nil }
