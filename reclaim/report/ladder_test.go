package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func rungItem(p *snapshot.Process, fd int, side snapshot.Side, verdict plan.Verdict, method policy.Method, rung, why string) plan.Item {
	return plan.Item{Finding: classify.Finding{Kind: classify.KindPTY, Process: p, FD: fd, Side: side,
		PTY: snapshot.PTYID{Index: fd}, State: classify.Unattached, Proven: true},
		Verdict: verdict, Method: method, Rung: rung, RungWhy: why, Reason: "because"}
}

func TestAuditSaysTheLadderPerHolder(t *testing.T) {
	claude := &snapshot.Process{PID: 50, Comm: "Claude"}
	plainLinux := &snapshot.Process{PID: 60, Comm: "leak"}
	items := []plan.Item{
		rungItem(claude, 3, snapshot.Master, plan.Reclaim, policy.MethodInspector, plan.RungInspector, "task port refused; runtime: inspector"),
		rungItem(claude, 4, snapshot.Master, plan.Reclaim, policy.MethodInspector, plan.RungInspector, "task port refused; runtime: inspector"),
		rungItem(claude, 5, snapshot.Slave, plan.Reclaim, policy.MethodRevoke, plan.RungRevoke, "task port refused; the master is closed"),
		rungItem(plainLinux, 3, snapshot.Master, plan.Reclaim, "devnull", plan.RungInPlace, ""),
	}
	snap := &snapshot.Snapshot{Pool: snapshot.Pool{InUse: 500, Limit: 511}}
	var b bytes.Buffer
	WriteAuditTable(&b, snap, items)
	out := b.String()
	want := "\nRemedy ladder per holder:\n  pid 50 (Claude): inspector for 2 fds (task port refused; runtime:\n    inspector); revoke for 1 fd (task port refused; the master is closed)\n"
	if !strings.Contains(out, want) {
		t.Errorf("table lacks %q:\n%s", want, out)
	}
	// A plain in-place release needs no line.
	if strings.Contains(out, "pid 60 (leak)") {
		t.Errorf("plain holder listed:\n%s", out)
	}

	doc, _ := json.Marshal(NewAudit(snap, items))
	for _, w := range []string{`"rung":"revoke"`, `"ladder":[{"pid":50,"comm":"Claude","steps":[{"rung":"inspector","fds":2,"why":"task port refused; runtime: inspector"}`} {
		if !strings.Contains(string(doc), w) {
			t.Errorf("JSON lacks %s: %s", w, doc)
		}
	}
}
