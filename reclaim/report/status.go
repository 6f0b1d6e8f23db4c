package report

import (
	"fmt"
	"io"
	"sort"

	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report/text"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// Holder is one process in status output.
type Holder struct {
	PID    int    `json:"pid"`
	Comm   string `json:"comm"`
	Exe    string `json:"exe"`
	UID    int    `json:"uid"`
	PTYs   int    `json:"ptys"`
	Leaked int    `json:"leaked"`
}

// Status is the document status --json prints.
type Status struct {
	Pool    snapshot.Pool `json:"pool"`
	Holders []Holder      `json:"holders"`
	Orphans int           `json:"orphans"`
	Notes   []string      `json:"notes,omitempty"`
}

// NewStatus counts distinct PTYs, and leaked ones, per holder; holders come
// most first, at most top of them (0: all).
func NewStatus(s *snapshot.Snapshot, findings []classify.Finding, top int) Status {
	st := Status{Pool: s.Pool, Holders: []Holder{}, Notes: s.Notes}
	for _, f := range findings {
		if f.Kind == classify.KindOrphan {
			st.Orphans++
		}
	}
	for _, h := range classify.Holdings(findings) {
		p := h.Process
		st.Holders = append(st.Holders, Holder{PID: p.PID, Comm: p.Comm, Exe: p.Exe, UID: p.UID, PTYs: h.PTYs, Leaked: h.Leaked})
	}
	sort.Slice(st.Holders, func(i, j int) bool {
		a, b := st.Holders[i], st.Holders[j]
		if a.PTYs != b.PTYs {
			return a.PTYs > b.PTYs
		}
		return a.PID < b.PID
	})
	if top > 0 && len(st.Holders) > top {
		st.Holders = st.Holders[:top]
	}
	return st
}

// WriteStatusTable prints the pool and the top holders, one row each;
// comm and exe go through Printable.
func WriteStatusTable(w io.Writer, st Status) {
	pct := 0
	if st.Pool.Limit > 0 {
		pct = st.Pool.InUse * 100 / st.Pool.Limit
	}
	fmt.Fprintf(w, "PTY pool: %d of %d in use (%d%%); %s\n", st.Pool.InUse, st.Pool.Limit, pct,
		plural(st.Orphans, "stuck child", "stuck children"))
	writeNotes(w, st.Notes)
	if len(st.Holders) == 0 {
		fmt.Fprintln(w, "No process holds a PTY fd.")
		return
	}
	fmt.Fprintf(w, "\n%-7s %-16s %5s %7s  %s\n", "PID", "COMMAND", "PTYS", "LEAKED", "EXECUTABLE")
	for _, h := range st.Holders {
		fmt.Fprintf(w, "%-7d %s %5d %7d  %s\n", h.PID, text.Cell(h.Comm, 16), h.PTYs, h.Leaked, text.Clip(Printable(h.Exe), 80-41))
	}
}
