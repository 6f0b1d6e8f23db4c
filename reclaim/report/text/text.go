// Package text makes bytes that come from processes (comm, exe, paths, and
// reasons built from them) safe to print for a person: no terminal escape,
// no control character, no newline that could forge a table row, valid
// UTF-8. It also measures and clips that printable form by terminal width.
// It imports nothing of ptyreclaim, so that every package that writes human
// text (report, cli, policy) can use this one function.
package text

import (
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Printable returns s with every byte that a terminal could act on written
// as a Go-style escape: invalid UTF-8 as \xff, control characters (C0, DEL,
// C1), format characters such as bidi overrides and every space but ASCII
// space as \n, \x1b, \u009b, \u202e. A backslash becomes \\, so that the
// printed form reads back to exactly one string. Printable runes of any
// script stay as they are.
func Printable(s string) string {
	return escape(s, true)
}

// Controls is Printable for text that already escapes its own backslashes
// and quotes, such as a log line whose fields zap wrote JSON-style: it
// escapes what a terminal could act on (and invalid UTF-8) and leaves
// backslashes and tabs as they are.
func Controls(s string) string {
	return escape(s, false)
}

func escape(s string, backslash bool) string {
	if isPlainASCII(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case r == '\\' && backslash:
			b.WriteString(`\\`)
		case r == '\t' && !backslash: // zap's console encoder separates fields with tabs
			b.WriteByte('\t')
		case unicode.IsPrint(r):
			b.WriteString(s[i : i+size])
		default:
			q := strconv.QuoteRuneToASCII(r) // '\n', '\x1b', '\u202e'
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	return b.String()
}

// isPlainASCII reports whether s is printable ASCII without a backslash:
// the common case, returned as is without allocating.
func isPlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '\\' {
			return false
		}
	}
	return true
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}

// Width is how many terminal columns s takes: combining marks take none,
// East Asian wide and fullwidth characters two, everything else one. It is
// meant for the output of Printable.
func Width(s string) int {
	w := 0
	for _, r := range s {
		w += runeWidth(r)
	}
	return w
}

func runeWidth(r rune) int {
	switch {
	case r < 0x300:
		return 1
	case unicode.In(r, unicode.Mn, unicode.Me):
		return 0
	case isWide(r):
		return 2
	}
	return 1
}

// wide are the East Asian Wide and Fullwidth blocks (Unicode's
// EastAsianWidth W and F, in whole blocks), and the emoji blocks terminals
// draw two columns wide.
var wide = [][2]rune{
	{0x1100, 0x115f}, {0x231a, 0x231b}, {0x2329, 0x232a}, {0x23e9, 0x23ec},
	{0x2e80, 0x303e}, {0x3041, 0x33ff}, {0x3400, 0x4dbf}, {0x4e00, 0x9fff},
	{0xa000, 0xa4cf}, {0xa960, 0xa97f}, {0xac00, 0xd7a3}, {0xf900, 0xfaff},
	{0xfe10, 0xfe19}, {0xfe30, 0xfe6f}, {0xff00, 0xff60}, {0xffe0, 0xffe6},
	{0x16fe0, 0x18cff}, {0x1b000, 0x1b2ff}, {0x1f300, 0x1f64f}, {0x1f680, 0x1f6ff},
	{0x1f900, 0x1f9ff}, {0x1fa70, 0x1faff}, {0x20000, 0x3fffd},
}

func isWide(r rune) bool {
	for _, b := range wide {
		if r < b[0] {
			return false
		}
		if r <= b[1] {
			return true
		}
	}
	return false
}

// Clip returns s cut to at most n columns, ending in "~" when it was cut,
// never in the middle of a character. s should be the output of Printable.
func Clip(s string, n int) string {
	if Width(s) <= n {
		return s
	}
	if n <= 0 {
		return ""
	}
	w := 0
	for i, r := range s {
		rw := runeWidth(r)
		if w+rw > n-1 {
			return s[:i] + "~"
		}
		w += rw
	}
	return s
}

// Pad returns s followed by spaces up to n columns (fmt's %-14s counts
// runes, not columns).
func Pad(s string, n int) string {
	if w := Width(s); w < n {
		return s + strings.Repeat(" ", n-w)
	}
	return s
}

// Cell is Pad(Clip(Printable(s), n), n): one table cell of n columns.
func Cell(s string, n int) string {
	return Pad(Clip(Printable(s), n), n)
}

// Writer passes every line written to w through Controls, keeping the
// newlines that end lines: for a log on a terminal. Each Write should hold
// whole lines (zap writes one entry per call).
func Writer(w io.Writer) io.Writer { return lineWriter{w} }

type lineWriter struct{ w io.Writer }

func (l lineWriter) Write(p []byte) (int, error) {
	lines := strings.Split(string(p), "\n")
	for i, line := range lines {
		lines[i] = Controls(line)
	}
	if _, err := io.WriteString(l.w, strings.Join(lines, "\n")); err != nil {
		return 0, err
	}
	return len(p), nil
}
