//go:build darwin

package inspector

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
)

// On macOS the route needs no task port: SIGUSR1 and a TCP connection
// are all it uses, which is why it reaches notarized apps that refuse
// every debugger. What it reads, it reads through libproc and sysctl.

// catchesSIGUSR1Darwin reads p_sigcatch (struct extern_proc, through
// sysctl kern.proc.pid): the signals pid has a handler for.
func catchesSIGUSR1Darwin(pid int) (bool, error) {
	kp, err := unix.SysctlKinfoProc("kern.proc.pid", pid)
	if err != nil {
		return false, err
	}
	if int(kp.Proc.P_pid) != pid {
		return false, errors.New("process gone")
	}
	return kp.Proc.P_sigcatch&(1<<(uint(unix.SIGUSR1)-1)) != 0, nil
}

// onFUSE reports whether path lies on a FUSE file system (macFUSE and its
// forks), from the kernel's mount table without asking the file system
// itself: a FUSE server could hold any call on it forever.
func onFUSE(path string) bool {
	n, err := unix.Getfsstat(nil, unix.MNT_NOWAIT)
	if err != nil || n <= 0 {
		return true // unknown: treat as unsafe
	}
	mounts := make([]unix.Statfs_t, n)
	if n, err = unix.Getfsstat(mounts, unix.MNT_NOWAIT); err != nil {
		return true
	}
	best, fuse := "", false
	for _, m := range mounts[:n] {
		on := unix.ByteSliceToString(m.Mntonname[:])
		if !strings.HasPrefix(path, strings.TrimSuffix(on, "/")+"/") || len(on) <= len(best) {
			continue
		}
		t := unix.ByteSliceToString(m.Fstypename[:])
		best, fuse = on, strings.Contains(t, "fuse")
	}
	return fuse
}

// checkDarwin re-reads what lets the route run on pid, as checkProcess
// does on Linux; it returns the refusal as a predicate, or "", and the
// executable's path.
func checkDarwin(pid int, startTime uint64) (string, string) {
	start, exited, err := libproc.Identity(pid)
	switch {
	case err != nil:
		return "has an unreadable identity: " + err.Error(), ""
	case exited:
		return "has exited", ""
	case startTime != 0 && start != startTime:
		return "is another process now (its start time changed)", ""
	}
	catches, err := catchesSIGUSR1Darwin(pid)
	switch {
	case err != nil:
		return "has unreadable signal handlers: " + err.Error(), ""
	case !catches:
		return "does not catch SIGUSR1 (its default action would end it)", ""
	}
	exe := libproc.Path(pid)
	if exe == "" {
		return "has an unreadable executable path", ""
	}
	node := false
	for _, f := range []string{exe, FuseFile(exe)} {
		if onFUSE(f) {
			return "is not proven Node.js or Electron (its code is on a FUSE mount, which is never read)", exe
		}
		r, err := os.Open(f)
		if err != nil {
			continue
		}
		ok, _ := machoExports(r, machoNodeSymbol)
		r.Close()
		if ok {
			node = true
			break
		}
	}
	if !node {
		return "is not Node.js or Electron", exe
	}
	return "", exe
}

// fuseAllowsDarwin reads the fuse wire of an Electron app (in its
// framework) or of node itself (which has none).
func fuseAllowsDarwin(exe string, cache map[string]fuseAnswer) (bool, string) {
	file := FuseFile(exe)
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		return false, "its fuse wire file is unreadable"
	}
	key := fmt.Sprintf("%d %d %d %s", st.Dev, st.Ino, st.Mtim.Sec, file)
	if a, ok := cache[key]; ok {
		return a.ok, a.why
	}
	f, err := os.Open(file)
	if err != nil {
		return false, "its fuse wire file is unreadable"
	}
	defer f.Close()
	wires, err := ReadFuseWires(f)
	a := fuseAnswer{why: "its Electron fuse wire is unreadable: " + fmt.Sprint(err)}
	if err == nil {
		a.ok, a.why = NodeCliInspect(wires)
	}
	if cache != nil {
		cache[key] = a
	}
	return a.ok, a.why
}

// listenerDarwin says who listens on port: pid itself on 127.0.0.1 (own,
// from its sockets through libproc), or anyone else (foreign: another
// process's listener that takes connections to 127.0.0.1:port, or pid's
// own on another address), read from every process's sockets. Where some
// process cannot be read (not root), a connection to 127.0.0.1:port that
// is accepted while pid holds no such listener counts as foreign; no byte
// is sent on it. Whatever this says, the route talks only over a
// connection the target itself accepted (provenDial).
func listenerDarwin(pid, port int) (own, foreign bool) {
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if socks, err := libproc.TCPSockets(pid); err == nil {
		for _, s := range socks {
			switch {
			case s.Listening && s.Port == port && s.Addr.Unmap() == lo:
				own = true
			case s.ListensOn(port):
				foreign = true
			}
		}
	}
	holders, unreadable, err := libproc.PortListeners(port)
	if err == nil && unreadable == 0 {
		for p := range holders {
			if p != pid {
				foreign = true
			}
		}
		return own, foreign
	}
	if own || foreign {
		return own, foreign
	}
	c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 100*time.Millisecond)
	if err == nil {
		c.Close()
		return false, true
	}
	return false, false
}

// Check says whether the route may release pid's fds, and why. It changes
// nothing and sends nothing.
func (p *Prober) Check(pid int, startTime uint64) (bool, string) {
	why, exe := checkDarwin(pid, startTime)
	if why != "" {
		return false, "it " + why
	}
	ok, fuseWhy := fuseAllowsDarwin(exe, p.fuses)
	if !ok {
		return false, fuseWhy
	}
	own, foreign := listenerDarwin(pid, DefaultPort)
	switch {
	case own:
		return false, fmt.Sprintf("its inspector is already open on port %d (someone may be debugging it)", DefaultPort)
	case foreign:
		return false, fmt.Sprintf("port %d is taken by another process", DefaultPort)
	}
	return true, fmt.Sprintf("Node.js or Electron, catches SIGUSR1, %s, port %d free", fuseWhy, DefaultPort)
}

// Release runs the route in one process. See release: with an error and
// no outcomes, nothing says an fd was touched, but an evaluation whose
// answer was lost may have run: callers check fds from outside again.
func Release(ctx context.Context, t Target, log *zap.Logger) (Report, error) {
	probe, err := libproc.NewFDProbe()
	if err != nil {
		return Report{}, err
	}
	return release(ctx, &darwinHost{t: t, probe: probe}, t, log)
}

// darwinHost is the route's view of one process through libproc. macOS
// has no pidfd: the identity is checked right before the signal, so a
// pid reused in between cannot be excluded; the window is one libproc
// call long, and the new process would have to catch SIGUSR1 too.
type darwinHost struct {
	t     Target
	probe *libproc.FDProbe
}

func (h *darwinHost) close() {}

func (h *darwinHost) recheck() error {
	why, exe := checkDarwin(h.t.PID, h.t.StartTime)
	if why != "" {
		return fmt.Errorf("pid %d %s: not signalled", h.t.PID, why)
	}
	if ok, why := fuseAllowsDarwin(exe, nil); !ok {
		return fmt.Errorf("pid %d: %s: not signalled", h.t.PID, why)
	}
	return nil
}

func (h *darwinHost) listener(port int) (own, foreign bool) { return listenerDarwin(h.t.PID, port) }

// accepted finds the server end of our connection among the target's
// sockets. libproc shows one process's sockets only, so a connection
// someone else accepted is never seen as foreign here: the caller waits
// to its deadline and refuses.
func (h *darwinHost) accepted(local netip.AddrPort, port int) (held, foreign bool) {
	socks, err := libproc.TCPSockets(h.t.PID)
	if err != nil {
		return false, false
	}
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	for _, s := range socks {
		if s.Established && s.Port == port && s.Addr.Unmap() == lo &&
			s.Peer.Port() == local.Port() && s.Peer.Addr().Unmap() == local.Addr() {
			return true, false
		}
	}
	return false, false
}

func (h *darwinHost) ports() map[int]bool {
	out := map[int]bool{}
	socks, _ := libproc.TCPSockets(h.t.PID)
	for _, s := range socks {
		if s.Listening {
			out[s.Port] = true
		}
	}
	return out
}

func (h *darwinHost) sigusr1() error {
	start, exited, err := libproc.Identity(h.t.PID)
	if err != nil || exited || (h.t.StartTime != 0 && start != h.t.StartTime) {
		return errors.New("it is not the same process any more")
	}
	return unix.Kill(h.t.PID, unix.SIGUSR1)
}

func (h *darwinHost) gone(fd int) bool {
	now, err := h.probe.Look(h.t.PID, fd)
	return err == nil && now.Kind == libproc.FDClosed
}
