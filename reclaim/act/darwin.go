//go:build darwin

package act

import (
	"context"
	"errors"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/lldb"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Darwin releases fds in place by driving lldb where root can get the task
// port, ends disposable holders whose fds cannot be released in place, and
// ends orphan children, each after re-checking through libproc.
type Darwin struct {
	actor *macActor
}

var _ Actor = (*Darwin)(nil)

// DarwinOptions tune the macOS platform.
type DarwinOptions struct {
	// Grace is how long a process gets between SIGTERM and SIGKILL.
	Grace time.Duration
	// LastIO returns the last I/O time the scan saw for a PTY; nil skips
	// the "no I/O since the scan" check.
	LastIO func(id snapshot.PTYID) time.Time
	// LLDB is the lldb binary; "" finds the one of the active developer
	// directory (xcode-select -p), then the Command Line Tools and Xcode.
	LLDB string
	// ExprTimeout bounds each call lldb runs in a holder (default 2s).
	ExprTimeout time.Duration
}

// NewDarwin returns the macOS platform. One value serves one run: it
// remembers the holders it ended.
func NewDarwin(o DarwinOptions) *Darwin {
	if o.ExprTimeout <= 0 {
		o.ExprTimeout = 2 * time.Second
	}
	probe := lazyProbe()
	return &Darwin{actor: &macActor{
		rungs: macRungSys{
			stat: func(pid, fd int) (libproc.FDNow, libproc.VinfoStat, error) {
				p, err := probe()
				if err != nil {
					return libproc.FDNow{}, libproc.VinfoStat{}, err
				}
				return p.Stat(pid, fd)
			},
			masters: func(indices []int) (map[int][]int, int, error) {
				p, err := probe()
				if err != nil {
					return nil, 0, err
				}
				return p.MasterHolders(indices)
			},
			node: func(index int) (bool, uint32, error) {
				var st unix.Stat_t
				err := unix.Stat(nodePath(index), &st)
				if errors.Is(err, unix.ENOENT) {
					return false, 0, nil
				}
				return err == nil, uint32(st.Rdev), err
			},
			ttysMajor: func() (uint32, bool) {
				p, err := probe()
				if err != nil {
					return 0, false
				}
				return p.TTYSMajor()
			},
			revoke:  unix.Revoke,
			inspect: inspector.Release,
		},
		grace:       o.Grace,
		exprTimeout: o.ExprTimeout,
		scanLastIO:  o.LastIO,
		sys: macSys{
			identity: libproc.Identity,
			signal:   func(pid int, sig syscall.Signal) error { return unix.Kill(pid, sig) },
			sleep:    time.Sleep,
			blocked:  libproc.ProcessBlocked,
			inPlace: func(pid int) string {
				if ok, reason := libproc.InPlaceReclaimPossible(pid); !ok {
					return reason
				}
				return ""
			},
			look:    lookFD(),
			lastIO:  libproc.PTYLastIO,
			kqueues: libproc.KQueueRegs,
			lldb:    lldb.Run(o.LLDB, o.ExprTimeout),
		},
	}}
}

// Reclaim releases p's planned fds: kill-holder items end the holder once,
// the others are released inside the process with one lldb session.
func (d *Darwin) Reclaim(ctx context.Context, p *snapshot.Process, items []plan.Item, log *zap.Logger) ([]Action, time.Duration) {
	return d.actor.reclaim(ctx, p, items, log)
}

// Kill ends an orphan child, or the holder of a kill-holder item (once per
// holder, however many of its items come).
func (d *Darwin) Kill(_ context.Context, it plan.Item, log *zap.Logger) Action {
	return d.actor.kill(it, log)
}

// lookFD reads fds through one libproc probe, made on first use.
func lookFD() func(pid, fd int) (libproc.FDNow, error) {
	probe := lazyProbe()
	return func(pid, fd int) (libproc.FDNow, error) {
		p, err := probe()
		if err != nil {
			return libproc.FDNow{}, err
		}
		return p.Look(pid, fd)
	}
}

// lazyProbe makes one libproc probe on first use. The PTY majors it learns
// hold until reboot.
func lazyProbe() func() (*libproc.FDProbe, error) {
	var probe *libproc.FDProbe
	return func() (*libproc.FDProbe, error) {
		if probe == nil {
			p, err := libproc.NewFDProbe()
			if err != nil {
				return nil, err
			}
			probe = p
		}
		return probe, nil
	}
}
