package policy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, that every error is one
// line, and that every accepted policy passes Validate again and can be
// explained and applied.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("*.yaml")
	more, _ := filepath.Glob("testdata/*.yaml")
	for _, path := range append(seeds, more...) {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"version: 1\n",
		"version: 1\npressure: {warn: 50, critical: 60%}\nholders: {warn_at: 1, reclaim_at: 2}\n",
		"version: 1\nallow:\n  - {name: \"n*\", exe: /a/**/b, user: 0, ptys: reclaim, orphans: kill, disposable: true}\n",
		"version: 1\ndeny:\n  - {user: root}\n",
		"version: 1\ndefaults: &a {min_idle: 1s}\npressure: *a\n",
		"version: 1\n---\n",
		"[a\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse(data, "f.yaml")
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") {
				t.Fatalf("error is not one line: %q", msg)
			}
			return
		}
		if err := p.Validate(); err != nil {
			t.Fatalf("accepted policy fails Validate: %v", err)
		}
		if x := p.Explain(); strings.ContainsAny(x, "\r\x1b") {
			t.Fatalf("Explain output carries control characters: %q", x)
		}
		_ = p.Decide(Subject{Name: "node", Exe: "/opt/app/node", UID: 0})
		_ = p.MinIdle(95, 100)
	})
}
