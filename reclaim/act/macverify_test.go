package act

import (
	"strings"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/lldb"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func TestCheckPlanned(t *testing.T) {
	it := item(5, 16, snapshot.Master, policy.MethodDevNull)
	if why := checkPlanned(it, libproc.FDNow{Kind: libproc.FDPTY, Side: snapshot.Master, Index: 16}); why != "" {
		t.Errorf("same PTY: %q", why)
	}
	for _, now := range []libproc.FDNow{
		{Kind: libproc.FDPTY, Side: snapshot.Master, Index: 17},
		{Kind: libproc.FDPTY, Side: snapshot.Slave, Index: 16},
		{Kind: libproc.FDClosed},
		{Kind: libproc.FDOther, Path: "/tmp/x"},
	} {
		if why := checkPlanned(it, now); !strings.Contains(why, "changed since the scan") {
			t.Errorf("%v: %q", now, why)
		}
	}
}

func TestReleased(t *testing.T) {
	devnull := item(5, 16, snapshot.Master, policy.MethodDevNull)
	closing := item(5, 16, snapshot.Master, policy.MethodClose)
	ok := lldb.Outcome{NullFD: 31, Calls: map[int]lldb.Call{5: {Ran: true, Ret: 5}}}
	closed := lldb.Outcome{NullFD: -1, Calls: map[int]lldb.Call{5: {Ran: true, Ret: 0}}}
	failedDup := lldb.Outcome{NullFD: 31, Calls: map[int]lldb.Call{5: {Ran: true, Ret: -1}}}
	noAttach := lldb.Outcome{NullFD: -1, AttachError: "attach failed (Not allowed to attach to process.)", Calls: map[int]lldb.Call{}}
	stillPTY := libproc.FDNow{Kind: libproc.FDPTY, Side: snapshot.Master, Index: 16}
	cases := []struct {
		name   string
		it     plan.Item
		now    libproc.FDNow
		out    lldb.Outcome
		result string
		reason string
	}{
		{"dup2 over /dev/null", devnull, libproc.FDNow{Kind: libproc.FDDevNull}, ok, Done, ""},
		{"closed", closing, libproc.FDNow{Kind: libproc.FDClosed}, closed, Done, ""},
		{"/dev/null even if the output was lost", devnull, libproc.FDNow{Kind: libproc.FDDevNull}, lldb.Outcome{NullFD: -1}, Done, ""},
		{"dup2 failed", devnull, stillPTY, failedDup, Failed, "dup2 returned -1 in the holder; fd 5 still holds the master of ttys016"},
		{"open failed", devnull, stillPTY, lldb.Outcome{NullFD: -1, NullSeen: true, Calls: map[int]lldb.Call{5: {Ran: true, Ret: -1}}}, Failed, "open /dev/null returned -1 in the holder"},
		{"no attach", devnull, stillPTY, noAttach, Failed, "lldb could not attach: attach failed"},
		{"reused after close", closing, libproc.FDNow{Kind: libproc.FDOther, Path: "/tmp/log"}, closed, Done, "reused fd 5 since (now /tmp/log)"},
		{"changed behind lldb", closing, libproc.FDNow{Kind: libproc.FDOther, Path: "/tmp/log"}, noAttach, Failed, "fd 5 is now /tmp/log"},
	}
	for _, c := range cases {
		result, reason := released(c.it, c.now, c.out)
		if result != c.result || !strings.Contains(reason, c.reason) || (c.reason == "" && reason != "") {
			t.Errorf("%s: %s %q, want %s %q", c.name, result, reason, c.result, c.reason)
		}
	}
}

func item(fd, index int, side snapshot.Side, method policy.Method) plan.Item {
	return plan.Item{
		Finding: classify.Finding{Kind: classify.KindPTY, Process: &snapshot.Process{PID: 4242, StartTime: 1}, FD: fd,
			Side: side, PTY: snapshot.PTYID{Index: index}, PTYName: "ttys016", State: classify.Unattached, Proven: true},
		Verdict: plan.Reclaim, Method: method,
	}
}
