// Package platform is the one boundary between the platform-neutral stages
// (classify, plan, report, the pipeline) and the operating system: where
// snapshots come from, what acts inside processes, who may control the PTY
// limit and where the installed files live. It is built once per run and
// passed in, so that tests can hand the commands a fake one.
package platform

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/peer"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Platform is what one operating system gives the commands and the daemon.
type Platform struct {
	// Name is the operating system, as GOOS spells it.
	Name string
	// NewSource returns the scanner, logging to log.
	NewSource func(log *zap.Logger) snapshot.Source
	// NewActor returns what acts on the processes of one snapshot: it
	// compares what it finds under the freeze with what the scan saw.
	NewActor func(snap *snapshot.Snapshot) act.Actor
	// RaiseLimit, when not nil, raises the system PTY limit under critical
	// pressure and returns the new limit (macOS kern.tty.ptmx_max); Linux
	// leaves /proc/sys/kernel/pty/max to the administrator.
	RaiseLimit func(pool snapshot.Pool) (int, error)
	// Paths are where the installed files live.
	Paths Paths
	// PTYName names a PTY as the user sees it: pts/N on Linux, ttysNNN on
	// macOS.
	PTYName func(index int) string

	// Peer says who is at the other end of the daemon's socket.
	Peer func(c *net.UnixConn) (peer.Caller, error)
	// MayAct says why a self-service caller could not act on the process
	// herself (nil when she could).
	MayAct func(cl peer.Caller, pid int, start uint64) error
	// Guard returns actor with check asked again under every freeze; a
	// platform that must but cannot do so returns an error.
	Guard func(actor act.Actor, check func(pid int) error) (act.Actor, error)
	// Probes, when not nil, lets every plan ask this machine the inspector
	// route's questions (is a holder Node or Electron, may it be
	// signalled, who else is logged in). One Platform keeps its answers
	// about binaries for its lifetime: the daemon reads each one once.
	Probes func(o *plan.Options)
}

// Paths are the installed locations.
type Paths struct {
	// Policy is the installed policy file.
	Policy string
	// Socket is where the daemon serves self-service requests and where
	// release looks for it.
	Socket string
	// Lock keeps one daemon at a time.
	Lock string
}

// OrphanGrace is how long a stuck child or a disposable holder gets
// between SIGTERM and SIGKILL.
const OrphanGrace = 2 * time.Second

// lastIOOf gives the actor the last I/O time the scan saw for each PTY, to
// compare with what it reads back before releasing.
func lastIOOf(snap *snapshot.Snapshot) func(snapshot.PTYID) time.Time {
	return func(id snapshot.PTYID) time.Time {
		if p := snap.PTYs[id]; p != nil {
			return p.LastIO
		}
		return time.Time{}
	}
}

func ptsName(index int) string { return fmt.Sprintf("pts/%d", index) }

// ErrUnsupported is what every scan and action says on an operating system
// ptyreclaim does not know.
var ErrUnsupported = fmt.Errorf("unsupported platform %s: ptyreclaim reads processes and acts inside them on Linux and macOS only", runtime.GOOS)

// unsupported is the source of an unknown operating system: every read
// fails with ErrUnsupported, so commands that need none (version, policy
// check) still work.
type unsupported struct{}

func (unsupported) Take(context.Context, snapshot.Options) (*snapshot.Snapshot, error) {
	return nil, ErrUnsupported
}

func (unsupported) Pool() (snapshot.Pool, error) { return snapshot.Pool{}, ErrUnsupported }

// noGuard is the Guard of a platform with no freeze-time check to add
// (see peer.MayAct).
func noGuard(actor act.Actor, _ func(pid int) error) (act.Actor, error) { return actor, nil }
