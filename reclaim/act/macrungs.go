package act

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// The macOS rungs that need no task port: revoke(2) for slaves whose
// master is closed, and the inspector route for Node and Electron
// holders. Their decisions are here, without build tags, so that they run
// on Linux against fake system calls; darwin.go plugs in libproc and the
// syscalls.

// macRungSys is what those rungs need from the system.
type macRungSys struct {
	// stat reads fd of pid: what it is now and its vinfo_stat.
	stat func(pid, fd int) (libproc.FDNow, libproc.VinfoStat, error)
	// masters reads every process's fds again and returns, per PTY index
	// asked about, the pids holding its master, and how many processes
	// could not be read.
	masters func(indices []int) (map[int][]int, int, error)
	// node stats /dev/ttysNNN: whether it exists and its rdev.
	node func(index int) (exists bool, rdev uint32, err error)
	// ttysMajor is the slaves' device major, learnt by stat.
	ttysMajor func() (uint32, bool)
	// revoke calls revoke(2) on a path.
	revoke func(path string) error
	// inspect runs the inspector route.
	inspect func(ctx context.Context, t inspector.Target, log *zap.Logger) (inspector.Report, error)
}

// nodePath is the device node of PTY index: /dev/ttysNNN.
func nodePath(index int) string { return fmt.Sprintf("/dev/ttys%03d", index) }

// revokeSlaves releases slave fds whose master is closed with revoke(2) on
// the slave's node. xnu's vn_revoke runs the device close for every open
// reference of that device, in every process, and turns each into a dead
// vnode: the holder's fd stays open, reads return 0 (EOF), writes and
// ioctls fail, select and kqueue report it ready, and close succeeds. Once
// both ends are closed, ptmx_free_ioctl frees the slot and removes the
// node. Each fd is checked through libproc before (still the planned
// slave, no I/O since the scan, and no process holding the master, read
// again) and after (it reads back revoked).
func (m *macActor) revokeSlaves(p *snapshot.Process, items []plan.Item, log *zap.Logger) []Action {
	out := make([]Action, 0, len(items))
	var indices []int
	for _, it := range items {
		indices = append(indices, it.PTY.Index)
	}
	holders, unreadable, mErr := m.rungs.masters(indices)
	for _, it := range items {
		out = append(out, m.revokeOne(p, it, holders, unreadable, mErr, log))
	}
	return out
}

func (m *macActor) revokeOne(p *snapshot.Process, it plan.Item, holders map[int][]int, unreadable int, mErr error, log *zap.Logger) Action {
	act := func(result, reason string) Action {
		a := NewAction(it, result, reason)
		a.Method = policy.MethodRevoke
		return a
	}
	now, _, err := m.rungs.stat(p.PID, it.FD)
	switch {
	case err != nil:
		return act(Failed, fmt.Sprintf("fd %d unreadable before the revoke: %v", it.FD, err))
	case now.Kind == libproc.FDRevoked:
		// Revoked already: by this run through another holder of the same
		// slave, or by xnu at a session leader's exit. It pins nothing.
		return act(Done, "the fd was already revoked: it pins nothing")
	}
	if why := checkPlanned(it, now); why != "" {
		return act(Skipped, why)
	}
	if m.scanLastIO != nil && !m.sys.lastIO(it.PTY.Index).Equal(m.scanLastIO(it.PTY)) {
		return act(Skipped, ptyLabel(it)+" saw I/O since the scan")
	}
	switch {
	case mErr != nil:
		return act(Failed, fmt.Sprintf("could not read every process again to prove the master is closed: %v", mErr))
	case unreadable > 0:
		return act(Skipped, fmt.Sprintf("%d processes could not be read, one could hold the master of %s: revoking would hang up a terminal in use", unreadable, ptyLabel(it)))
	case len(holders[it.PTY.Index]) > 0:
		return act(Skipped, fmt.Sprintf("pid %d holds the master of %s: revoking would hang up a terminal in use", holders[it.PTY.Index][0], ptyLabel(it)))
	}
	major, ok := m.rungs.ttysMajor()
	if !ok {
		return act(Failed, "the slaves' device major is unknown")
	}
	path := nodePath(it.PTY.Index)
	exists, rdev, err := m.rungs.node(it.PTY.Index)
	switch {
	case err != nil:
		return act(Failed, fmt.Sprintf("stat %s: %v", path, err))
	case !exists:
		return act(Skipped, path+" is gone: the PTY is already freed, or the fd is not what the scan saw")
	case rdev != libproc.Makedev(major, uint32(it.PTY.Index)):
		return act(Skipped, fmt.Sprintf("%s is another device now (rdev %#x)", path, rdev))
	}
	if err := m.rungs.revoke(path); err != nil {
		return act(Failed, fmt.Sprintf("revoke(%s): %v", path, err))
	}
	log.Info("revoked", zap.Int("pid", p.PID), zap.Int("fd", it.FD), zap.String("path", path))
	after, _, err := m.rungs.stat(p.PID, it.FD)
	if err != nil {
		return act(Failed, fmt.Sprintf("fd %d unreadable after the revoke: %v", it.FD, err))
	}
	switch after.Kind {
	case libproc.FDRevoked:
	case libproc.FDClosed:
		return act(Done, "revoked; the holder has closed the fd since")
	default:
		return act(Failed, fmt.Sprintf("revoke(%s) returned, but fd %d is %s, not a revoked vnode", path, it.FD, after))
	}
	reason := fmt.Sprintf("revoked %s: the fd now reads EOF and closes without error; it pins nothing", path)
	if exists, _, err := m.rungs.node(it.PTY.Index); err == nil && !exists {
		reason += ", and the node is gone: the slot is free"
	} else {
		reason += fmt.Sprintf("; %s still exists (another reference, or a new PTY on the same index)", path)
	}
	return act(Done, reason)
}

// releaseInspector releases items through the holder's own inspector,
// after checking each fd through libproc (still the planned PTY, no I/O
// since the scan) and noting its file, which the program's own fstat must
// still show right before it acts.
func (m *macActor) releaseInspector(ctx context.Context, p *snapshot.Process, items []plan.Item, log *zap.Logger) []Action {
	expect := map[int]inspector.FileID{}
	refused := map[int]string{}
	for _, it := range items {
		now, st, err := m.rungs.stat(p.PID, it.FD)
		switch {
		case err != nil:
			refused[it.FD] = fmt.Sprintf("fd %d unreadable before the release: %v", it.FD, err)
		case checkPlanned(it, now) != "":
			refused[it.FD] = checkPlanned(it, now)
		case m.scanLastIO != nil && !m.sys.lastIO(it.PTY.Index).Equal(m.scanLastIO(it.PTY)):
			refused[it.FD] = ptyLabel(it) + " saw I/O since the scan"
		default:
			expect[it.FD] = inspector.FileID{Dev: st.Dev, Ino: st.Ino, Rdev: st.Rdev}
		}
	}
	out := make([]Action, len(items))
	var todo []plan.Item
	var at, fds []int
	for i, it := range items {
		why := refused[it.FD]
		for _, o := range items {
			if why == "" && o.PTY == it.PTY && refused[o.FD] != "" {
				why = fmt.Sprintf("fd %d of the same PTY is skipped (%s): a PTY is released whole or not at all", o.FD, refused[o.FD])
			}
		}
		if why != "" {
			out[i] = NewAction(it, Skipped, why)
			out[i].Method = policy.MethodInspector
			continue
		}
		todo = append(todo, it)
		at = append(at, i)
		fds = append(fds, it.FD)
	}
	if len(todo) == 0 {
		return out
	}
	rep, err := m.rungs.inspect(ctx, inspector.Target{PID: p.PID, StartTime: p.StartTime, FDs: fds, Expect: expect, Watched: watched(p, todo, nil)}, log)
	for j, a := range inspectorActions(todo, rep, err) {
		// The route verified through its own look; libproc must read
		// the fd closed too, the check the in-place route makes.
		if a.Result == Done {
			now, _, serr := m.rungs.stat(p.PID, todo[j].FD)
			if serr != nil || now.Kind != libproc.FDClosed {
				a.Result = Failed
				a.Reason = strings.TrimSpace(fmt.Sprintf("the program reported the fd released, but libproc reads it as %s %s", now, errText(serr)))
			}
		}
		out[at[j]] = a
	}
	return out
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return "(" + err.Error() + ")"
}
