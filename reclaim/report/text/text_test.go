package text

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"node":                       "node",
		"tmux: server":               "tmux: server",
		"\x1b[31mred\x1b]0;x\x07":    `\x1b[31mred\x1b]0;x\a`,
		"a\nb\r\tc":                  `a\nb\r\tc`,
		"del\x7f":                    `del\x7f`,
		"caf\xc3\xa9":                "café",
		"cut\xe2\x82":                `cut\xe2\x82`, // comm cut mid-character by the kernel
		"\xff":                       `\xff`,
		"c1\u009b31m":                `c1\u009b31m`,
		"rlo\u202egnp.exe":           `rlo\u202egnp.exe`,
		"nbsp\u00a0x":                `nbsp\u00a0x`,
		`back\slash`:                 `back\\slash`,
		"日本語":                        "日本語",
		"/tmp/evil\n1 forged\x1b[2J": `/tmp/evil\n1 forged\x1b[2J`,
	} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWidthClipPad(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		clip string
	}{
		{"short", 14, "short"},
		{"exactlyfourtee", 14, "exactlyfourtee"},
		{"a-much-longer-name", 14, "a-much-longer~"},
		{"日本語日本語日本語", 14, "日本語日本語~"},              // 2 columns each: 6 fit before the "~"
		{"ééééééééééééééé", 14, "ééééééééééééé~"}, // never half an é
		{"e\u0301e\u0301e\u0301", 2, "e\u0301~"},  // a combining mark stays with its letter
	} {
		got := Clip(c.in, c.n)
		if got != c.clip {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.in, c.n, got, c.clip)
		}
		if !utf8.ValidString(got) || Width(got) > c.n {
			t.Errorf("Clip(%q, %d) = %q: width %d", c.in, c.n, got, Width(got))
		}
		if p := Pad(got, c.n); Width(p) != c.n {
			t.Errorf("Pad(%q) is %d columns", got, Width(p))
		}
	}
	if Width("日本") != 4 || Width("e\u0301") != 1 || Width("abc") != 3 {
		t.Error("Width is wrong")
	}
}

// checkSafe fails when s holds anything a terminal could act on: a byte
// below 0x20 other than the newlines allowed at row ends, DEL, a C1 control,
// or invalid UTF-8.
func checkSafe(t *testing.T, s string, newlines bool) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("not valid UTF-8: %q", s)
	}
	for _, r := range s {
		if (r < 0x20 && !(newlines && r == '\n')) || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			t.Fatalf("control character %U in %q", r, s)
		}
		if r == '\u202e' || r == '\u2028' || r == '\u2029' {
			t.Fatalf("format character %U in %q", r, s)
		}
	}
}

func FuzzPrintable(f *testing.F) {
	for _, s := range []string{"node", "\x1b[31mred\x1b]0;x\x07", "a\nb", "\xff\xfe", "日本\xe6\x97", `\x1b`, "\u202e"} {
		f.Add(s, 14)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		p := Printable(s)
		checkSafe(t, p, false)
		if strings.Contains(p, "\n") {
			t.Fatalf("newline in %q", p)
		}
		if s == p && !isPlainASCII(s) && strings.ContainsAny(s, "\\") {
			t.Fatalf("backslash not escaped in %q", p)
		}
		n = n%100 + 1
		if n < 1 {
			n += 100
		}
		c := Clip(p, n)
		checkSafe(t, c, false)
		if Width(c) > n {
			t.Fatalf("Clip(%q, %d) = %q is %d columns", p, n, c, Width(c))
		}
		if !strings.HasPrefix(p, strings.TrimSuffix(c, "~")) {
			t.Fatalf("Clip(%q, %d) = %q is not a prefix", p, n, c)
		}
		if w := Width(Cell(s, n)); w != n {
			t.Fatalf("Cell(%q, %d) is %d columns", s, n, w)
		}
	})
}

func TestControlsAndWriter(t *testing.T) {
	in := "comm=\"\\u001b[31m\"\tc1=\u009b31m del=\x7f bad=\xff\n"
	var b strings.Builder
	if _, err := Writer(&b).Write([]byte(in)); err != nil {
		t.Fatal(err)
	}
	want := "comm=\"\\u001b[31m\"\tc1=\\u009b31m del=\\x7f bad=\\xff\n"
	if b.String() != want {
		t.Errorf("Writer wrote %q, want %q", b.String(), want)
	}
	checkSafe(t, strings.ReplaceAll(b.String(), "\t", " "), true)
}
