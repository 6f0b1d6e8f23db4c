package libproc

import (
	"strings"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// nullRdev is /dev/null on macOS: major 3, minor 2.
var nullRdev = Makedev(3, 2)

func TestDescribeVnode(t *testing.T) {
	cases := []struct {
		name string
		fd   FDDetail
		want FDNow
	}{
		{"master of ttys016", vnodeFD(t, 5, chrMode, 300, Makedev(15, 16), "/dev/ptmx"),
			FDNow{Kind: FDPTY, Side: snapshot.Master, Index: 16, Path: "/dev/ptmx"}},
		{"slave ttys003", vnodeFD(t, 6, chrMode, 301, Makedev(16, 3), "/dev/ttys003"),
			FDNow{Kind: FDPTY, Side: snapshot.Slave, Index: 3, Path: "/dev/ttys003"}},
		{"/dev/null after a devnull release", vnodeFD(t, 5, 0o020666, 302, nullRdev, "/dev/null"),
			FDNow{Kind: FDDevNull, Path: "/dev/null"}},
		{"a regular file that reused the fd", vnodeFD(t, 5, 0o100644, 303, nullRdev, "/tmp/log"),
			FDNow{Kind: FDOther, Path: "/tmp/log"}},
		{"another character device", vnodeFD(t, 5, chrMode, 304, Makedev(3, 3), "/dev/zero"),
			FDNow{Kind: FDOther, Path: "/dev/zero"}},
	}
	for _, c := range cases {
		if got := DescribeVnode(*c.fd.Vnode, testMajors, nullRdev); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestFDNowString(t *testing.T) {
	cases := map[string]FDNow{
		"the master of ttys016": {Kind: FDPTY, Side: snapshot.Master, Index: 16},
		"closed":                {Kind: FDClosed},
		"/dev/null":             {Kind: FDDevNull},
		"/tmp/log":              {Kind: FDOther, Path: "/tmp/log"},
		"a revoked vnode":       {Kind: FDRevoked},
	}
	for want, f := range cases {
		if got := f.String(); got != want {
			t.Errorf("%+v: %q, want %q", f, got, want)
		}
	}
}

func TestStillBlocked(t *testing.T) {
	want := &snapshot.BlockedRead{FD: 0, Pipe: readEnd}
	waiting := pipeEnd(t, 0, openRead, readEnd, writeEnd, pipeWantR).Pipe
	cases := []struct {
		name    string
		threads int
		state   int32
		pipe    PipeFD
		want    *snapshot.BlockedRead
		reason  string
	}{
		{"still stuck", 1, ThreadWaiting, waiting, want, ""},
		{"started a thread", 2, ThreadWaiting, waiting, want, "2 threads"},
		{"running", 1, 1, waiting, want, "no longer waiting"},
		{"fd now another pipe", 1, ThreadWaiting, pipeEnd(t, 0, openRead, 0xC1, 0xD1, pipeWantR).Pipe, want, "same pipe"},
		{"read returned", 1, ThreadWaiting, pipeEnd(t, 0, openRead, readEnd, writeEnd, 0).Pipe, want, "same read"},
		{"nothing proved", 1, ThreadWaiting, waiting, nil, "no blocked read"},
	}
	for _, c := range cases {
		got := StillBlocked(c.threads, c.state, c.pipe, c.want)
		if (c.reason == "") != (got == "") || !strings.Contains(got, c.reason) {
			t.Errorf("%s: %q, want %q", c.name, got, c.reason)
		}
	}
}

func TestReAddFlags(t *testing.T) {
	cases := []struct {
		name string
		k    Knote
		want uint16
	}{
		{"plain read watch (libuv)", Knote{Flags: evAdd | evEnable}, evAdd | evEnable},
		{"edge-triggered (Go's netpoller)", Knote{Flags: evAdd | evClear}, evAdd | evClear | evEnable},
		{"oneshot", Knote{Flags: evOneshot}, evAdd | evOneshot | evEnable},
		{"disabled by its owner", Knote{Flags: evDisable, Status: knDisabled}, evAdd | evDisable},
		{"dispatch, delivered", Knote{Flags: evDispatch | evUdataSpecific, Status: knDisabled}, evAdd | evDispatch | evUdataSpecific | evDisable},
		{"EV_RECEIPT and others dropped", Knote{Flags: 0x0040 | 0x4000}, evAdd | evEnable},
	}
	for _, c := range cases {
		if got := c.k.ReAddFlags(); got != c.want {
			t.Errorf("%s: %#x, want %#x", c.name, got, c.want)
		}
	}
}

func TestRegsOf(t *testing.T) {
	regs := []KQueueReg{
		{KQ: 4, Knote: Knote{Ident: 13, Filter: evFiltRead, UData: 0xa}},
		{KQ: 4, Knote: Knote{Ident: 13, Filter: evFiltWrite, UData: 0xb}},
		{KQ: 9, Knote: Knote{Ident: 13, Filter: evFiltRead, UData: 0xc}},
		{KQ: 4, Knote: Knote{Ident: 14, Filter: evFiltRead}},
		{KQ: 4, Knote: Knote{Ident: 13, Filter: -4}},                             // EVFILT_VNODE: not a watch
		{KQ: 4, Knote: Knote{Ident: 13, Filter: evFiltRead, Status: knDropping}}, // going away
		{KQ: -1, Knote: Knote{Ident: 15, Filter: evFiltRead}},
	}
	got, why := RegsOf(regs, 13)
	if why != "" || len(got) != 3 || got[0].UData != 0xa || got[1].UData != 0xb || got[2].KQ != 9 {
		t.Errorf("fd 13: %+v %q", got, why)
	}
	if got, why := RegsOf(regs, 15); got != nil || !strings.Contains(why, "no fd (libdispatch)") {
		t.Errorf("fd 15: %+v %q", got, why)
	}
	if got, why := RegsOf(regs, 20); got != nil || why != "" {
		t.Errorf("fd 20: %+v %q", got, why)
	}
	want := regs[:3]
	after := []KQueueReg{
		{KQ: 4, Knote: Knote{Ident: 13, Filter: evFiltRead, UData: 0xa}},
		{KQ: 4, Knote: Knote{Ident: 13, Filter: evFiltWrite, UData: 0xbb}}, // other udata
		{KQ: 9, Knote: Knote{Ident: 13, Filter: evFiltRead, UData: 0xc, Status: knDisabled}},
	}
	if m := MissingRegs(want, after); len(m) != 2 || m[0].Filter != evFiltWrite || m[1].KQ != 9 {
		t.Errorf("missing %+v", m)
	}
	if m := MissingRegs(want, regs); len(m) != 0 {
		t.Errorf("missing %+v from the very same", m)
	}
}
