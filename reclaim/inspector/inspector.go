// Package inspector releases leaked PTY fds inside Node.js and Electron
// programs through their own inspector, without ptrace or a task port.
//
// Node opens its inspector (the Chrome DevTools Protocol on
// 127.0.0.1:9229) when it receives SIGUSR1. Through it, code runs inside the
// live program on its own event loop: the route finds the net.Socket that
// owns each planned fd (node-pty's tty.ReadStream and pipe sockets derive
// from it) and destroys it, so the program's own close handlers run as on a
// real hang-up; an fd no socket owns is closed. Then it closes the
// inspector again and checks from outside that the fds and the listener are
// gone.
//
// While it is open, the inspector is an unauthenticated code-execution
// endpoint for every local user. The route is opt-in per allow rule
// (runtime: inspector), keeps the window to one exchange, refuses when the
// port is taken or answers for another process, and by default refuses
// when other users are on the machine (see SECURITY.md).
//
// On macOS, a notarized Electron app refuses every debugger, but it still
// opens its inspector on SIGUSR1 unless its nodeCliInspect fuse is off; the
// fuse wire is read from the app's binary (FuseWire).
package inspector

import (
	"strings"
	"time"
)

// nodeSymbol is exported by every Node.js embedder, node itself and
// Electron included: native addons register through it.
const nodeSymbol = "node_module_register"

// DefaultPort is where Node's inspector listens when SIGUSR1 opens it.
const DefaultPort = 9229

// sigusr1Bit is SIGUSR1 (10) in a /proc/PID/status signal mask.
const sigusr1Bit = uint64(1) << (10 - 1)

// CatchesSIGUSR1 reports whether a SigCgt mask says the process catches
// SIGUSR1. A process that does not would be killed by it (the default
// action), so it is never sent one.
func CatchesSIGUSR1(sigCgt uint64) bool { return sigCgt&sigusr1Bit != 0 }

// inspectorOption returns the first argument that sets up Node's
// inspector or its signal (--inspect, --inspect-brk, --inspect-port,
// --inspect-wait, --debug-port, --disable-sigusr1, and their =VALUE
// forms), or "". Arguments after a lone "--" belong to the script.
func inspectorOption(args []string) string {
	for _, a := range args {
		if a == "--" {
			return ""
		}
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "--inspect", "--inspect-brk", "--inspect-port", "--inspect-wait", "--inspect-publish-uid",
			"--debug-port", "--disable-sigusr1":
			return a
		}
	}
	return ""
}

// Target is what to release in one process.
type Target struct {
	PID int
	// StartTime is /proc/PID/stat field 22 when the fds were examined; a
	// mismatch means the pid was reused and nothing is done.
	StartTime uint64
	FDs       []int
	// Expect holds, per fd, the file the plan saw there; the evaluation
	// compares it with what the program's own fstat says and leaves the
	// fd alone when it is another file now (the number was reused). An fd
	// without an entry is not compared.
	Expect map[int]FileID
	// Watched holds the fds something in the program watches (epoll,
	// kqueue), each with the program's other fds that are the same open
	// file. A watched fd no net.Socket owns is closed only when a
	// net.Socket owns one of those others (the watcher is then a handle
	// the evaluation sees, working on its own number); else its watcher
	// is invisible (a native addon's) and the fd is left open.
	Watched map[int][]int
	// Port is the inspector's port; 0 means DefaultPort.
	Port int
	// Timeout bounds the whole route; 0 means DefaultTimeout.
	Timeout time.Duration
}

// FileID is what fstat says about an open file: enough to tell that an fd
// number still names the same one. Dev and Rdev keep their low 32 bits
// (macOS dev_t is 32 bits wide; Linux devpts numbers fit).
type FileID struct {
	Dev  uint32
	Ino  uint64
	Rdev uint32
}

// DefaultTimeout bounds one release through the inspector.
const DefaultTimeout = 10 * time.Second

// openWait bounds the wait for the inspector to listen after SIGUSR1: a
// program whose inspector is already active, or disabled
// (--disable-sigusr1), never opens one on the port.
const openWait = 5 * time.Second

// Report says what one release through the inspector did.
type Report struct {
	// Outcomes are per fd: what the evaluation did, then Verified when the
	// fd is seen gone from outside afterwards.
	Outcomes []FDResult
	// Open is how long the inspector was listening, from the first sight of
	// its socket to the last; zero when it never opened.
	Open time.Duration
	// StillOpen is true when the inspector could not be closed again: then
	// it stays reachable on 127.0.0.1 until the program ends.
	StillOpen bool
	Notes     []string
}

// FDResult is the outcome for one fd.
type FDResult struct {
	Outcome
	// Verified is true when the fd has left the process, seen from
	// outside; only then is the release done.
	Verified bool
}

// Prober answers the plan's question about a holder: may the route take
// its fds, and why (Check, per platform)? It keeps the fuse answers per
// executable file, so a daemon reads each binary once.
type Prober struct {
	fuses map[string]fuseAnswer
}

// NewProber returns a Prober with an empty cache.
func NewProber() *Prober { return &Prober{fuses: map[string]fuseAnswer{}} }

type fuseAnswer struct {
	ok  bool
	why string
}
