package act

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/inspector"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

const ttysMajor = 16

// fakeXNU models what the rungs rely on in xnu: fds by pid, which PTY
// index each end is, the /dev/ttysNNN nodes, and revoke(2): every slave
// reference of the device becomes a dead vnode, and once no master is
// open either the slot is freed and the node removed (ptmx_free_ioctl).
type fakeXNU struct {
	fds        map[int]map[int]libproc.FDNow
	nodes      map[int]bool
	unreadable int
	revoked    []string
	// inspected records the targets the inspector route was asked for;
	// inspect is what it does.
	inspected []inspector.Target
	inspect   func(t inspector.Target) (inspector.Report, error)
}

func slaveOf(index int) libproc.FDNow {
	return libproc.FDNow{Kind: libproc.FDPTY, Side: snapshot.Slave, Index: index, Path: nodePath(index)}
}

func (x *fakeXNU) rungs() macRungSys {
	return macRungSys{
		stat: func(pid, fd int) (libproc.FDNow, libproc.VinfoStat, error) {
			now, ok := x.fds[pid][fd]
			if !ok {
				return libproc.FDNow{Kind: libproc.FDClosed}, libproc.VinfoStat{}, nil
			}
			return now, libproc.VinfoStat{Dev: 0x3000000, Ino: uint64(1000 + fd), Rdev: libproc.Makedev(15, uint32(now.Index))}, nil
		},
		masters: func(indices []int) (map[int][]int, int, error) {
			out := map[int][]int{}
			for pid, fds := range x.fds {
				for _, now := range fds {
					if now.Kind == libproc.FDPTY && now.Side == snapshot.Master {
						out[now.Index] = append(out[now.Index], pid)
					}
				}
			}
			return out, x.unreadable, nil
		},
		node: func(index int) (bool, uint32, error) {
			return x.nodes[index], libproc.Makedev(ttysMajor, uint32(index)), nil
		},
		ttysMajor: func() (uint32, bool) { return ttysMajor, true },
		revoke: func(path string) error {
			x.revoked = append(x.revoked, path)
			index := -1
			for i := range x.nodes {
				if nodePath(i) == path {
					index = i
				}
			}
			if index < 0 {
				return errors.New("no such file or directory")
			}
			masterOpen := false
			for _, fds := range x.fds {
				for fd, now := range fds {
					if now.Kind == libproc.FDPTY && now.Index == index {
						if now.Side == snapshot.Slave {
							fds[fd] = libproc.FDNow{Kind: libproc.FDRevoked}
						} else {
							masterOpen = true
						}
					}
				}
			}
			if !masterOpen {
				delete(x.nodes, index)
			}
			return nil
		},
		inspect: func(_ context.Context, t inspector.Target, _ *zap.Logger) (inspector.Report, error) {
			x.inspected = append(x.inspected, t)
			return x.inspect(t)
		},
	}
}

func (x *fakeXNU) actor() *macActor {
	f := &fakeMac{start: map[int]uint64{}, lastIO: time.Unix(100, 0)}
	a := f.actor()
	a.rungs = x.rungs()
	return a
}

// macScan is a macOS snapshot as libproc's reader builds it, on fixture
// data: node-pty's spawn path left pid 40 holding the slave of ttys007
// after the master closed; pid 40's hardened runtime refuses the task
// port.
func macScan() *snapshot.Snapshot {
	refused := "hardened runtime: task_for_pid refused"
	app := &snapshot.Process{PID: 40, Comm: "Claude", Exe: "/Applications/Claude.app/Contents/MacOS/Claude", InPlaceRefused: refused,
		PTYFDs: []snapshot.PTYFD{
			{FD: 20, Side: snapshot.Slave, PTY: snapshot.PTYID{Index: 7}, Proven: true, Watched: true},
			{FD: 21, Side: snapshot.Master, PTY: snapshot.PTYID{Index: 8}, Proven: true},
		}}
	return &snapshot.Snapshot{
		Taken:     time.Unix(1000, 0),
		Processes: []*snapshot.Process{app},
		PTYs: map[snapshot.PTYID]*snapshot.PTY{
			{Index: 7}: {ID: snapshot.PTYID{Index: 7}, Name: "ttys007", LastIO: time.Unix(100, 0)},
			{Index: 8}: {ID: snapshot.PTYID{Index: 8}, Name: "ttys008", LastIO: time.Unix(100, 0)},
		},
	}
}

// The whole macOS decision on fixture data: libproc's reader marks the
// masterless slave hung up, classify calls it a leak, the plan gives it
// the revoke rung (watched or not: revoke ends it as a hang-up would),
// and the actor revokes it, verified before and after.
func TestRevokeRungFromScanToRelease(t *testing.T) {
	snap := macScan()
	if n := libproc.MarkMasterless(snap.Processes, snap.Unreadable); n != 1 {
		t.Fatalf("marked %d", n)
	}
	findings := classify.Classify(snap, classify.Options{MinIdle: classify.FixedMinIdle(time.Minute)})
	pol, err := policy.Parse([]byte("version: 1\nallow:\n  - name: Claude\n    ptys: reclaim\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	items := plan.Plan(findings, plan.Options{Policy: pol})
	var slave, mst plan.Item
	for _, it := range items {
		switch it.FD {
		case 20:
			slave = it
		case 21:
			mst = it
		}
	}
	if slave.State != classify.HungUp || slave.Verdict != plan.Reclaim || slave.Rung != plan.RungRevoke || slave.Method != policy.MethodRevoke {
		t.Fatalf("slave: %s %s %s %q %q", slave.State, slave.Verdict, slave.Rung, slave.Method, slave.Reason)
	}
	// The master of ttys008 (its slave is elsewhere) cannot be revoked:
	// report only, and the ladder says why.
	if mst.Verdict != plan.Skip || mst.Rung != plan.RungReport || !strings.Contains(mst.Reason, "inspector:") {
		t.Fatalf("master: %s %s %q", mst.Verdict, mst.Rung, mst.Reason)
	}

	x := &fakeXNU{
		fds:   map[int]map[int]libproc.FDNow{40: {20: slaveOf(7), 21: master(8)}},
		nodes: map[int]bool{7: true, 8: true},
	}
	acts, _ := x.actor().reclaim(context.Background(), snap.Processes[0], []plan.Item{slave}, zap.NewNop())
	a := acts[0]
	if a.Result != Done || a.Method != policy.MethodRevoke || !strings.Contains(a.Reason, "reads EOF") || !strings.Contains(a.Reason, "the slot is free") {
		t.Fatalf("revoke: %+v", a)
	}
	if len(x.revoked) != 1 || x.revoked[0] != "/dev/ttys007" || x.nodes[7] || x.fds[40][20].Kind != libproc.FDRevoked {
		t.Fatalf("revoked %v, nodes %v, fd %v", x.revoked, x.nodes, x.fds[40][20])
	}
}

func TestRevokeRefusals(t *testing.T) {
	p := &snapshot.Process{PID: 40, Comm: "Claude", InPlaceRefused: "hardened"}
	item := plan.Item{Finding: classify.Finding{Kind: classify.KindPTY, Process: p, FD: 20, Side: snapshot.Slave,
		PTY: snapshot.PTYID{Index: 7}, PTYName: "ttys007", State: classify.HungUp, Proven: true}, Verdict: plan.Reclaim, Method: policy.MethodRevoke}
	for _, c := range []struct {
		name   string
		setup  func(x *fakeXNU, a *macActor)
		result string
		reason string
	}{
		{"a master is open again (missed by the scan)", func(x *fakeXNU, _ *macActor) { x.fds[41] = map[int]libproc.FDNow{3: master(7)} },
			Skipped, "pid 41 holds the master of ttys007: revoking would hang up a terminal in use"},
		{"a process could not be read", func(x *fakeXNU, _ *macActor) { x.unreadable = 2 },
			Skipped, "2 processes could not be read"},
		{"fd reused", func(x *fakeXNU, _ *macActor) { x.fds[40][20] = libproc.FDNow{Kind: libproc.FDDevNull} },
			Skipped, "fd 20 is now /dev/null"},
		{"I/O since the scan", func(_ *fakeXNU, a *macActor) { a.sys.lastIO = func(int) time.Time { return time.Unix(999, 0) } },
			Skipped, "ttys007 saw I/O since the scan"},
		{"node gone", func(x *fakeXNU, _ *macActor) { delete(x.nodes, 7) },
			Skipped, "/dev/ttys007 is gone"},
		{"node is another device", func(_ *fakeXNU, a *macActor) {
			a.rungs.node = func(int) (bool, uint32, error) { return true, libproc.Makedev(ttysMajor, 9), nil }
		}, Skipped, "is another device now"},
	} {
		x := &fakeXNU{fds: map[int]map[int]libproc.FDNow{40: {20: slaveOf(7)}}, nodes: map[int]bool{7: true}}
		a := x.actor()
		c.setup(x, a)
		acts, _ := a.reclaim(context.Background(), p, []plan.Item{item}, zap.NewNop())
		if acts[0].Result != c.result || !strings.Contains(acts[0].Reason, c.reason) {
			t.Errorf("%s: %s %q, want %s %q", c.name, acts[0].Result, acts[0].Reason, c.result, c.reason)
		}
		if len(x.revoked) != 0 {
			t.Errorf("%s: revoked %v", c.name, x.revoked)
		}
	}
}

// A revoke reaches every reference of the device: the second holder of the
// same slave finds its fd revoked already, and nothing is revoked twice.
func TestRevokeOncePerSlave(t *testing.T) {
	x := &fakeXNU{fds: map[int]map[int]libproc.FDNow{40: {20: slaveOf(7)}, 41: {5: slaveOf(7)}}, nodes: map[int]bool{7: true}}
	a := x.actor()
	for _, h := range []struct{ pid, fd int }{{40, 20}, {41, 5}} {
		p := &snapshot.Process{PID: h.pid, InPlaceRefused: "hardened"}
		it := plan.Item{Finding: classify.Finding{Kind: classify.KindPTY, Process: p, FD: h.fd, Side: snapshot.Slave,
			PTY: snapshot.PTYID{Index: 7}, State: classify.HungUp, Proven: true}, Verdict: plan.Reclaim, Method: policy.MethodRevoke}
		acts, _ := a.reclaim(context.Background(), p, []plan.Item{it}, zap.NewNop())
		if acts[0].Result != Done {
			t.Errorf("pid %d: %+v", h.pid, acts[0])
		}
	}
	if len(x.revoked) != 1 {
		t.Errorf("revoked %v", x.revoked)
	}
}

func TestInspectorRungOnMacOS(t *testing.T) {
	p := &snapshot.Process{PID: 40, StartTime: 77, Comm: "Claude", InPlaceRefused: "hardened"}
	mk := func(fd, index int) plan.Item {
		return plan.Item{Finding: classify.Finding{Kind: classify.KindPTY, Process: p, FD: fd, Side: snapshot.Master,
			PTY: snapshot.PTYID{Index: index}, PTYName: nodePath(index)[5:], State: classify.Unattached, Proven: true},
			Verdict: plan.Reclaim, Method: policy.MethodInspector}
	}
	x := &fakeXNU{fds: map[int]map[int]libproc.FDNow{40: {30: master(1), 31: master(2), 32: master(3)}}, nodes: map[int]bool{}}
	x.inspect = func(tg inspector.Target) (inspector.Report, error) {
		var rep inspector.Report
		for _, fd := range tg.FDs {
			o := inspector.FDResult{Outcome: inspector.Outcome{FD: fd, How: "destroyed", Owner: "ReadStream", Count: 1}, Verified: true}
			if fd != 32 { // the program lies about fd 32
				delete(x.fds[40], fd)
			}
			rep.Outcomes = append(rep.Outcomes, o)
		}
		return rep, nil
	}
	acts, _ := x.actor().reclaim(context.Background(), p, []plan.Item{mk(30, 1), mk(31, 2), mk(32, 3)}, zap.NewNop())
	if len(x.inspected) != 1 {
		t.Fatalf("inspected %d times", len(x.inspected))
	}
	tg := x.inspected[0]
	if tg.PID != 40 || tg.StartTime != 77 || len(tg.FDs) != 3 || tg.Expect[31] != (inspector.FileID{Dev: 0x3000000, Ino: 1031, Rdev: libproc.Makedev(15, 2)}) {
		t.Fatalf("target %+v", tg)
	}
	if acts[0].Result != Done || acts[0].Method != policy.MethodInspector || !strings.Contains(acts[0].Reason, "ReadStream was destroyed inside the program") {
		t.Errorf("fd 30: %+v", acts[0])
	}
	if acts[2].Result != Failed || !strings.Contains(acts[2].Reason, "libproc reads it as the master of ttys003") {
		t.Errorf("fd 32: %+v", acts[2])
	}

	// An fd that saw I/O since the scan keeps the program from being
	// asked about it; the others still go.
	x = &fakeXNU{fds: map[int]map[int]libproc.FDNow{40: {30: master(1), 31: libproc.FDNow{Kind: libproc.FDOther, Path: "/tmp/log"}}}, nodes: map[int]bool{}}
	x.inspect = func(tg inspector.Target) (inspector.Report, error) {
		return inspector.Report{}, errors.New("port 9229 is taken by another process: the inspector route is refused")
	}
	acts, _ = x.actor().reclaim(context.Background(), p, []plan.Item{mk(30, 1), mk(31, 2)}, zap.NewNop())
	if acts[1].Result != Skipped || !strings.Contains(acts[1].Reason, "fd 31 is now /tmp/log") {
		t.Errorf("reused fd: %+v", acts[1])
	}
	if len(x.inspected) != 1 || len(x.inspected[0].FDs) != 1 || acts[0].Result != Failed || !strings.Contains(acts[0].Reason, "inspector route: port 9229 is taken") {
		t.Errorf("refused route: %+v %+v", x.inspected, acts[0])
	}
}

// vnodeAnswer is a PROC_PIDFDVNODEPATHINFO answer (struct
// vnode_fdinfowithpath, 1200 bytes) for what the fake xnu holds at an fd,
// or the errno the call fails with: the bytes the real probe decodes.
func vnodeAnswer(now libproc.FDNow) ([]byte, error) {
	switch now.Kind {
	case libproc.FDClosed:
		return nil, syscall.EBADF
	case libproc.FDRevoked:
		return nil, syscall.ENOENT
	}
	b := make([]byte, 1200)
	le := binary.LittleEndian
	le.PutUint32(b[16:], 1)                // fi_type: DTYPE_VNODE
	le.PutUint16(b[24+4:], 0o020620)       // vst_mode: S_IFCHR|0620
	major, path := uint32(15), "/dev/ptmx" // a master reads back as /dev/ptmx
	if now.Side == snapshot.Slave {
		major, path = ttysMajor, nodePath(now.Index)
	}
	le.PutUint32(b[24+116:], libproc.Makedev(major, uint32(now.Index))) // vst_rdev
	le.PutUint32(b[160:], 4)                                            // vi_type: VCHR
	copy(b[176:], path+"\x00")
	return b, nil
}

// The revoke rung decided on bytes: each before and after read goes
// through libproc's decoder (DescribeAnswer) on what xnu would answer, so
// the rung sees a slave of ttys007 by its rdev, then a revoked fd by
// ENOENT; an answer that still decodes as the slave after revoke(2) fails
// the action, and a master's bytes at the planned fd skip it.
func TestRevokeDecidedOnFixtureBytes(t *testing.T) {
	m := libproc.Majors{PTMX: 15, TTYS: ttysMajor, TTYSKnown: true}
	snap := macScan()
	libproc.MarkMasterless(snap.Processes, snap.Unreadable)
	findings := classify.Classify(snap, classify.Options{MinIdle: classify.FixedMinIdle(time.Minute)})
	pol, err := policy.Parse([]byte("version: 1\nallow:\n  - name: Claude\n    ptys: reclaim\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var slave plan.Item
	for _, it := range plan.Plan(findings, plan.Options{Policy: pol}) {
		if it.FD == 20 {
			slave = it
		}
	}
	if slave.Rung != plan.RungRevoke {
		t.Fatalf("slave: rung %q: %s", slave.Rung, slave.Reason)
	}
	for _, c := range []struct {
		name string
		// after replaces the fd's answer once revoke(2) ran.
		after  func(libproc.FDNow) libproc.FDNow
		before libproc.FDNow
		result string
		reason string
	}{
		{"revoked", nil, slaveOf(7), Done, "reads EOF"},
		{"still the slave after revoke", func(libproc.FDNow) libproc.FDNow { return slaveOf(7) }, slaveOf(7), Failed, "not a revoked vnode"},
		{"a master at the fd now", nil, libproc.FDNow{Kind: libproc.FDPTY, Side: snapshot.Master, Index: 7}, Skipped, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := &fakeXNU{fds: map[int]map[int]libproc.FDNow{40: {20: c.before, 21: master(8)}}, nodes: map[int]bool{7: true, 8: true}}
			a := x.actor()
			revoke := a.rungs.revoke
			a.rungs.revoke = func(path string) error {
				err := revoke(path)
				if c.after != nil {
					x.fds[40][20] = c.after(x.fds[40][20])
				}
				return err
			}
			a.rungs.stat = func(pid, fd int) (libproc.FDNow, libproc.VinfoStat, error) {
				now, ok := x.fds[pid][fd]
				if !ok {
					now = libproc.FDNow{Kind: libproc.FDClosed}
				}
				b, callErr := vnodeAnswer(now)
				got, err := libproc.DescribeAnswer(b, callErr, m, libproc.Makedev(3, 2))
				return got, libproc.VinfoStat{}, err
			}
			acts, _ := a.reclaim(context.Background(), snap.Processes[0], []plan.Item{slave}, zap.NewNop())
			if acts[0].Result != c.result || !strings.Contains(acts[0].Reason, c.reason) {
				t.Fatalf("%s %q, want %s %q", acts[0].Result, acts[0].Reason, c.result, c.reason)
			}
			if c.result == Skipped && len(x.revoked) != 0 {
				t.Fatalf("revoked %v on a skip", x.revoked)
			}
		})
	}
}
