package daemon

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func TestRedactNamesNoOtherUsersProcess(t *testing.T) {
	snap := &snapshot.Snapshot{Processes: []*snapshot.Process{
		{PID: 4242, UID: 1000, Comm: "mine"},
		{PID: 777, UID: 0, Comm: "gdb"},
	}}
	for reason, withheld := range map[string]bool{
		"traced by pid 777 (a debugger?): not touched while someone else traces it":              true,
		"blocked in read(fd 3) on pipe:[99]; every write end is held by itself and by 777 (gdb)": true,
		"no session uses /dev/pts/777": true, // an index that is also a pid: withholding is the safe side
		"fd 5 was closed meanwhile":    false,
		"held by 4242 (mine)":          false,
	} {
		if got := namesOthers(reason, snap, 1000); got != withheld {
			t.Errorf("%q: names others %v, want %v", reason, !withheld, withheld)
		}
	}
}

func TestLabelValue(t *testing.T) {
	for in, want := range map[string]string{
		"node":         "node",
		"\xff":         "\uFFFD",
		"\xd0\xb0\xd0": "а\uFFFD", // cut mid-character at 15 bytes
		"":             "",
	} {
		if got := labelValue(in); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// FuzzLabelValue: whatever bytes a process names itself, the Prometheus
// client takes the label without panicking.
func FuzzLabelValue(f *testing.F) {
	for _, s := range []string{"node", "\xff", "\xd0\xb0\xd0", "\x1b[31m", "a\x00b", strings.Repeat("\xe2\x82", 8)} {
		f.Add(s)
	}
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "x", Help: "x"}, []string{"comm"})
	f.Fuzz(func(t *testing.T, s string) {
		v := labelValue(s)
		if !utf8.ValidString(v) {
			t.Fatalf("%q -> %q: not valid UTF-8", s, v)
		}
		if utf8.ValidString(s) && v != s {
			t.Fatalf("valid %q changed to %q", s, v)
		}
		g.With(prometheus.Labels{"comm": v}).Set(1)
		g.Reset()
	})
}
