package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/report"
)

// hostileSrc opens argv[1] PTY masters and never closes them (raising its
// fd limit as needed), renames itself to argv[2] with PR_SET_NAME when
// given, prints "ready", then echoes stdin lines until EOF.
const hostileSrc = `
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 1;
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
		rl.rlim_cur = rl.rlim_max < (rlim_t)n + 64 ? rl.rlim_max : (rlim_t)n + 64;
		if (setrlimit(RLIMIT_NOFILE, &rl)) { perror("setrlimit"); return 1; }
	}
	if (argc > 2 && prctl(PR_SET_NAME, argv[2], 0, 0, 0)) { perror("prctl"); return 1; }
	for (int i = 0; i < n; i++) {
		int m = posix_openpt(O_RDWR | O_NOCTTY);
		if (m < 0 || grantpt(m) || unlockpt(m)) { perror("openpt"); return 1; }
	}
	printf("ready\n");
	fflush(stdout);
	char buf[4096];
	ssize_t r;
	while ((r = read(0, buf, sizeof buf)) > 0)
		if (write(1, buf, r) != r) return 1;
	return 0;
}
`

// hostileComm is what the attacker's process calls itself: red text, then
// an OSC that retitles the administrator's terminal.
const hostileComm = "\x1b[31mred\x1b]0;x\x07"

// safeHuman fails unless out is safe on a terminal: valid UTF-8, no
// control byte but the newline at each line's end, no DEL, no C1.
func safeHuman(t *testing.T, what, out string) []string {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("%s: not valid UTF-8:\n%q", what, out)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for _, l := range lines {
		for _, r := range l {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
				t.Fatalf("%s: control %U reaches the terminal in %q", what, r, l)
			}
		}
	}
	return lines
}

func rowsOf(lines []string, pid int) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, strconv.Itoa(pid)+" ") {
			n++
		}
	}
	return n
}

// startHostile runs the hostile program from a path holding a newline and
// escapes, under the name given (a copy of the binary named so).
func startHostile(t *testing.T, bin, dir, name string, args ...string) (*testproc.Proc, string) {
	t.Helper()
	path := filepath.Join(dir, name)
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	p := testproc.Start(t, path, args...)
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID))
	if err != nil || exe != path {
		t.Fatalf("the kernel shows exe %q (%v), want %q", exe, err, path)
	}
	return p, exe
}

// Issue 8 item 4: a process named with terminal escapes, run from a path
// with a newline and escapes, holding leaked PTYs; a second one whose
// name makes it a terminal server, so that a skip reason quotes its
// hostile comm. audit, status and release (dry run and real) must print
// every byte of theirs as a visible escape, one row per process.
func TestHostileNamesCannotReachTheTerminal(t *testing.T) {
	bin := testproc.BuildC(t, "hostile", hostileSrc)
	dir := filepath.Join(t.TempDir(), "evil\n70001   forged  master\x1b[2J")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a, exeA := startHostile(t, bin, dir, "leak\x1b]0;pwn\x07\n1 forged row", "3", hostileComm)
	b, _ := startHostile(t, bin, dir, "tmux\x1b[5m\nforged", "2")
	// C1 CSI, DEL, and invalid UTF-8 as a kernel cut leaves it.
	c, _ := startHostile(t, bin, dir, "cut", "1", "\xc2\x9b31m\x7f\xc3\xff")
	pa, pb, pc := strconv.Itoa(a.PID), strconv.Itoa(b.PID), strconv.Itoa(c.PID)
	commB := "tmux\x1b[5m\nforged" // 15 bytes: the kernel keeps them all

	out, errs, code := run(t, "status", "--top", "0")
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errs)
	}
	lines := safeHuman(t, "status", out)
	for _, pid := range []int{a.PID, b.PID, c.PID} {
		if n := rowsOf(lines, pid); n != 1 {
			t.Errorf("status: %d rows for pid %d, want 1:\n%s", n, pid, out)
		}
	}
	if !strings.Contains(out, `\x1b[31mred`) || !strings.Contains(out, `\u009b31m\x7f`) {
		t.Errorf("status does not show the names escaped:\n%s", out)
	}

	for _, args := range [][]string{
		{"audit", "--pid", pa, "--pid", pb, "--pid", pc, "--min-idle", "0s"},
		{"release", "--pid", pa, "--pid", pb, "--pid", pc, "--min-idle", "0s", "--dry-run"},
	} {
		out, errs, code := run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		lines := safeHuman(t, args[0], out)
		for _, pid := range []int{a.PID, b.PID, c.PID} {
			if n := rowsOf(lines, pid); n != 1 {
				t.Errorf("%v: %d rows for pid %d, want 1:\n%s", args, n, pid, out)
			}
		}
		if !strings.Contains(out, report.Printable(commB)+" is a terminal server") {
			t.Errorf("%v: the skip reason does not quote the comm escaped:\n%s", args, out)
		}
	}

	// JSON keeps the exact bytes (valid UTF-8 ones exactly, invalid ones
	// as U+FFFD) and is valid JSON.
	raw, _, code := run(t, "audit", "--json", "--pid", pa, "--pid", pc, "--min-idle", "0s")
	if code != 0 || !json.Valid([]byte(raw)) {
		t.Fatalf("audit --json: exit %d, valid %v:\n%s", code, json.Valid([]byte(raw)), raw)
	}
	var doc report.Audit
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	for _, f := range findingsOf(doc, a.PID) {
		if f.Comm != hostileComm || f.Exe != exeA {
			t.Errorf("JSON finding comm %q exe %q, want %q %q", f.Comm, f.Exe, hostileComm, exeA)
		}
	}

	// The real release: a's three masters and c's go, b (a terminal
	// server) is skipped with its reason escaped, one line per fd; the log
	// records on stderr, which quote every comm, are safe too.
	before := testproc.PTYCount(t)
	out, errs, code = run(t, "--log-level", "info", "release", "--pid", pa, "--pid", pb, "--pid", pc, "--min-idle", "0s", "--yes")
	if code != 0 {
		t.Fatalf("release: exit %d: %s\n%s", code, errs, out)
	}
	lines = safeHuman(t, "release", out)
	logs := safeHuman(t, "release log", strings.ReplaceAll(errs, "\t", " "))
	if n := countContaining(logs, `\u009b31m\x7f`); n != 1 {
		t.Errorf("release log: %d records of c's action, want 1:\n%s", n, errs)
	}
	if n := countPrefixed(lines, "  skipped pid "+pb+" fd "); n != 2 {
		t.Errorf("release: %d skipped rows for pid %s, want 2:\n%s", n, pb, out)
	}
	if after := testproc.PTYCount(t); before-after != 4 {
		t.Errorf("kernel PTY count %d -> %d, want a drop of 4", before, after)
	}
	echoes(t, a, "still here")

	// Error lines quoting hostile input are one escaped line.
	for _, args := range [][]string{
		{"release", "--name", "\x1b[31mnope\x07", "--dry-run"},
		{"policy", "check", filepath.Join(dir, "policy\x1b]0;x\x07.yaml")},
	} {
		out, errs, code = run(t, args...)
		if code != ExitUsage || strings.Count(errs, "\n") != 1 || out != "" {
			t.Errorf("%q: exit %d, stderr %q, stdout %q", args, code, errs, out)
		}
		safeHuman(t, "stderr", errs)
	}
}

func countPrefixed(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func countContaining(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}
