package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ptyreclaim/ptyreclaim/reclaim/act"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report/text"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Seeds: what the real-process test runs, a newline forging a row, a comm
// the kernel cut mid-character, C1 and bidi controls, wide characters.
var fuzzSeeds = [][2]string{
	{"\x1b[31mred\x1b]0;x\x07", "/tmp/evil\ndir\x1b[2J/leak"},
	{"leak", "/usr/bin/leak\n70002   forged  master 3  unattached 10m  reclaim"},
	{"caf\xc3", "/opt/\xff\xfe/app"},
	{"\u009b31m", "/bin/\u202egnp"},
	{"日本語のプロセス名", "/usr/bin/日本語"},
	{"", ""},
}

// checkHuman fails unless out is safe to show on a terminal: valid UTF-8,
// no control byte but the newline ending each line, no DEL, no C1, every
// line within width columns (0: no bound).
func checkHuman(t *testing.T, out string, width int) []string {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("output is not valid UTF-8:\n%q", out)
	}
	if !strings.HasSuffix(out, "\n") {
		t.Fatalf("output does not end a line: %q", out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, l := range lines {
		for _, r := range l {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
				t.Fatalf("control %U in line %q", r, l)
			}
		}
		if width > 0 && text.Width(l) > width {
			t.Fatalf("line of %d columns: %q", text.Width(l), l)
		}
	}
	return lines
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// fuzzScan is two processes with arbitrary comm and exe: a leaked master in
// the first, whose evidence quotes the second's comm as classify does, and
// an orphan child of the first in the second.
func fuzzScan(comm1, exe1, comm2, exe2 string) (*snapshot.Snapshot, []plan.Item) {
	p1 := &snapshot.Process{PID: 70001, Comm: comm1, Exe: exe1, UID: 1000}
	p2 := &snapshot.Process{PID: 70002, PPID: 70001, Comm: comm2, Exe: exe2, UID: 1000}
	s := &snapshot.Snapshot{Pool: snapshot.Pool{InUse: 5, Limit: 4096}, Processes: []*snapshot.Process{p1, p2},
		Notes: []string{"note quoting " + exe2}}
	items := []plan.Item{
		{Finding: classify.Finding{Kind: classify.KindPTY, Process: p1, State: classify.Unattached, FD: 3, Side: snapshot.Master,
			PTY: snapshot.PTYID{Instance: 1, Index: 7}, Evidence: "pts/7 was the controlling terminal of pid 70002 (" + comm2 + ")", Idle: time.Hour, Proven: true},
			Verdict: plan.Reclaim, Method: "devnull", Reason: "pts/7 was the controlling terminal of pid 70002 (" + comm2 + ")"},
		{Finding: classify.Finding{Kind: classify.KindOrphan, Process: p2, State: classify.Orphan, BlockedFD: 0, Idle: time.Hour},
			Verdict: plan.Skip, Reason: exe2 + " is a terminal server and holds PTYs on purpose"},
	}
	return s, items
}

func addSeeds(f *testing.F) {
	for _, a := range fuzzSeeds {
		for _, b := range fuzzSeeds {
			f.Add(a[0], a[1], b[0], b[1])
		}
	}
}

func FuzzAuditTable(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, comm1, exe1, comm2, exe2 string) {
		s, items := fuzzScan(comm1, exe1, comm2, exe2)
		var b bytes.Buffer
		WriteAuditTable(&b, s, items)
		lines := checkHuman(t, b.String(), 0)
		for _, l := range lines {
			if !strings.HasPrefix(l, "note: ") && text.Width(l) > 80 {
				t.Fatalf("line of %d columns: %q", text.Width(l), l)
			}
		}
		if n := countPrefix(lines, "7000"); n != 2 {
			t.Fatalf("%d rows for 2 processes:\n%s", n, b.String())
		}
		if n := countPrefix(lines, "note: "); n != 1 {
			t.Fatalf("%d note lines for 1 note:\n%s", n, b.String())
		}
		// JSON keeps the exact bytes where they are valid UTF-8 and is
		// valid JSON whatever they are.
		js, err := json.Marshal(NewAudit(s, items))
		if err != nil || !json.Valid(js) {
			t.Fatalf("audit JSON: %v\n%q", err, js)
		}
		var back Audit
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		if utf8.ValidString(comm1) && back.Findings[0].Comm != comm1 {
			t.Fatalf("JSON comm %q, want %q", back.Findings[0].Comm, comm1)
		}
	})
}

func FuzzStatusTable(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, comm1, exe1, comm2, exe2 string) {
		st := Status{Pool: snapshot.Pool{InUse: 5, Limit: 4096}, Notes: []string{comm1 + exe2}, Holders: []Holder{
			{PID: 70001, Comm: comm1, Exe: exe1, PTYs: 3, Leaked: 1},
			{PID: 70002, Comm: comm2, Exe: exe2, PTYs: 1},
		}}
		var b bytes.Buffer
		WriteStatusTable(&b, st)
		lines := checkHuman(t, b.String(), 0)
		for _, l := range lines {
			if strings.HasPrefix(l, "7000") && text.Width(l) > 80 {
				t.Fatalf("row of %d columns: %q", text.Width(l), l)
			}
		}
		if n := countPrefix(lines, "7000"); n != 2 {
			t.Fatalf("%d rows for 2 holders:\n%s", n, b.String())
		}
		if n := countPrefix(lines, "note: "); n != 1 {
			t.Fatalf("%d note lines for 1 note:\n%s", n, b.String())
		}
		if js, err := json.Marshal(st); err != nil || !json.Valid(js) {
			t.Fatalf("status JSON: %v\n%q", err, js)
		}
	})
}

func FuzzReleaseTable(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, comm1, exe1, comm2, exe2 string) {
		fd, idx := 3, 7
		rep := Release{
			PoolBefore: snapshot.Pool{InUse: 5, Limit: 4096}, PoolAfter: snapshot.Pool{InUse: 4, Limit: 4096},
			Actions: []act.Action{
				{Kind: "pty", PID: 70001, FD: &fd, Index: &idx, Method: "devnull", Result: act.Done},
				{Kind: "pty", PID: 70001, FD: &fd, Index: &idx, Method: "none", Result: act.Skipped, Reason: comm1 + " " + exe1},
				{Kind: "orphan", PID: 70002, Method: "kill", Result: act.Failed, Reason: "pid 70002 (" + comm2 + ") " + exe2},
			},
			Left: 1, LeftReason: "left " + comm2, Notes: []string{"pid 70001 (" + comm1 + "): nothing"},
		}
		var b bytes.Buffer
		WriteReleaseTable(&b, rep, func(i int) string { return fmt.Sprintf("pts/%d", i) })
		lines := checkHuman(t, b.String(), 0)
		if n := countPrefix(lines, "  skipped pid 70001 fd 3"); n != 1 {
			t.Fatalf("%d skipped rows, want 1:\n%s", n, b.String())
		}
		if n := countPrefix(lines, "  failed  pid 70002 orphan"); n != 1 {
			t.Fatalf("%d failed rows, want 1:\n%s", n, b.String())
		}
		if len(lines) != 6 {
			t.Fatalf("%d lines, want summary, freed, 2 rows, left, note:\n%s", len(lines), b.String())
		}
		if js, err := json.Marshal(rep); err != nil || !json.Valid(js) {
			t.Fatalf("release JSON: %v\n%q", err, js)
		}
	})
}

func FuzzReleasePlan(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, comm1, exe1, comm2, exe2 string) {
		s, items := fuzzScan(comm1, exe1, comm2, exe2)
		// The second process is named and gets nothing: its note quotes
		// its comm.
		sel := func(p *snapshot.Process) bool { return p.PID == 70002 }
		notes := WhyNothing(s, nil, items, sel)
		var b bytes.Buffer
		WriteReleasePlan(&b, s, items, notes)
		lines := checkHuman(t, b.String(), 0)
		if n := countPrefix(lines, "7000"); n != 2 {
			t.Fatalf("%d rows for 2 processes:\n%s", n, b.String())
		}
		if len(notes) != 1 || countPrefix(lines, "note: pid 70002 (") != 1 {
			t.Fatalf("notes %q:\n%s", notes, b.String())
		}
	})
}
