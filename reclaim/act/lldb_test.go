package act

import (
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/classify"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

func TestLLDBScriptDevNull(t *testing.T) {
	args, steps := lldbScript(4242, []int{5, 9}, policy.MethodDevNull, 2*time.Second)
	want := []string{
		"--batch", "--no-lldbinit", "--no-use-colors",
		"-O", "settings set interpreter.echo-commands true",
		"-O", "settings set interpreter.stop-command-source-on-error false",
		"-O", "settings set target.load-script-from-symbol-file false",
		"-O", "settings set target.load-cwd-lldbinit false",
		"-k", "process detach",
		"-o", "process attach --pid 4242",
		"-o", "thread select 1",
		"-o", `expression -a false -t 2000000 -u true -i true -- int $ptyreclaim_null = ((int (*)(const char *, int))open)("/dev/null", 2)`,
		"-o", "expression -a false -t 2000000 -u true -i true -- $ptyreclaim_null",
		"-o", "expression -a false -t 2000000 -u true -i true -- $ptyreclaim_null < 0 ? -1 : ((int (*)(int, int))dup2)($ptyreclaim_null, 5)",
		"-o", "expression -a false -t 2000000 -u true -i true -- $ptyreclaim_null < 0 ? -1 : ((int (*)(int, int))dup2)($ptyreclaim_null, 9)",
		"-o", "expression -a false -t 2000000 -u true -i true -- $ptyreclaim_null < 0 ? -1 : ((int (*)(int))close)($ptyreclaim_null)",
		"-o", "process detach",
	}
	if strings.Join(args, "\n") != strings.Join(want, "\n") {
		t.Errorf("args:\n%s\nwant:\n%s", strings.Join(args, "\n"), strings.Join(want, "\n"))
	}
	if len(steps) != 8 || steps[4].Kind != stepRelease || steps[4].FD != 5 || steps[5].FD != 9 {
		t.Errorf("steps: %+v", steps)
	}
}

func TestLLDBScriptClose(t *testing.T) {
	args, _ := lldbScript(7, []int{3}, policy.MethodClose, 500*time.Millisecond)
	joined := strings.Join(args, "\n")
	if !strings.Contains(joined, "\nexpression -a false -t 500000 -u true -i true -- ((int (*)(int))close)(3)\n") {
		t.Errorf("no close call:\n%s", joined)
	}
	if strings.Contains(joined, "/dev/null") {
		t.Errorf("close opens no /dev/null:\n%s", joined)
	}
}

// devNullSession is what lldb prints for a devnull release of fds 5 and 9
// of pid 4242 where dup2 on 9 fails to compile.
const devNullSession = `(lldb) settings set interpreter.echo-commands true
(lldb) process attach --pid 4242
Process 4242 stopped
* thread #1, queue = 'com.apple.main-thread', stop reason = signal SIGSTOP
    frame #0: 0x000000018a2b1c34 libsystem_kernel.dylib` + "`" + `kevent + 8
Executable module set to "/opt/homebrew/bin/node".
Architecture set to: arm64e-apple-macosx-.
(lldb) thread select 1
* thread #1, queue = 'com.apple.main-thread', stop reason = signal SIGSTOP
(lldb) expression -a false -t 2000000 -u true -i true -- int $ptyreclaim_null = ((int (*)(const char *, int))open)("/dev/null", 2)
(lldb) expression -a false -t 2000000 -u true -i true -- $ptyreclaim_null
(int) $ptyreclaim_null = 31
(lldb) expression -a false -t 2000000 -u true -i true -- $ptyreclaim_null < 0 ? -1 : ((int (*)(int, int))dup2)($ptyreclaim_null, 5)
(int) $0 = 5
(lldb) expression -a false -t 2000000 -u true -i true -- $ptyreclaim_null < 0 ? -1 : ((int (*)(int, int))dup2)($ptyreclaim_null, 9)
error: Expression execution was interrupted: timed out.
(lldb) expression -a false -t 2000000 -u true -i true -- $ptyreclaim_null < 0 ? -1 : ((int (*)(int))close)($ptyreclaim_null)
(int) $1 = 0
(lldb) process detach
Process 4242 detached
`

func TestParseLLDB(t *testing.T) {
	_, steps := lldbScript(4242, []int{5, 9}, policy.MethodDevNull, 2*time.Second)
	got := parseLLDB(strings.ReplaceAll(devNullSession, "\n", "\r\n"), steps)
	if got.AttachError != "" || got.NullFD != 31 || !got.NullSeen || got.NullErr != "" {
		t.Errorf("session: %+v", got)
	}
	if c := got.Calls[5]; !c.Ran || c.Ret != 5 || c.Err != "" {
		t.Errorf("fd 5: %+v", c)
	}
	if c := got.Calls[9]; c.Ran || c.Err != "Expression execution was interrupted: timed out." {
		t.Errorf("fd 9: %+v", c)
	}
}

func TestParseLLDBAttachRefused(t *testing.T) {
	_, steps := lldbScript(88, []int{4}, policy.MethodClose, time.Second)
	out := `(lldb) process attach --pid 88
error: attach failed: attach failed (Not allowed to attach to process.  Look in the console messages (Console.app), near the debugserver entries, when the attach failed.)
(lldb) thread select 1
error: invalid process
(lldb) expression -a false -t 1000000 -u true -i true -- ((int (*)(int))close)(4)
error: Command requires a current process.
(lldb) process detach
error: invalid process
`
	got := parseLLDB(out, steps)
	if !strings.HasPrefix(got.AttachError, "attach failed: attach failed (Not allowed") {
		t.Errorf("attach error: %q", got.AttachError)
	}
	if why := got.why(4, policy.MethodClose); !strings.HasPrefix(why, "lldb could not attach: ") {
		t.Errorf("why: %q", why)
	}
}

func TestParseLLDBIgnoresForeignLines(t *testing.T) {
	_, steps := lldbScript(1, []int{3}, policy.MethodClose, time.Second)
	// A value printed before any of our echoes, or after an unknown
	// command, belongs to no fd.
	got := parseLLDB("(int) $0 = 3\n(lldb) bt\n(int) $1 = 0\n", steps)
	if len(got.Calls) != 0 || got.NullFD != -1 {
		t.Errorf("%+v", got)
	}
}

func item(fd, index int, side snapshot.Side, method string) plan.Item {
	return plan.Item{
		Finding: classify.Finding{Kind: classify.KindPTY, Process: &snapshot.Process{PID: 4242, StartTime: 1}, FD: fd,
			Side: side, PTY: snapshot.PTYID{Index: index}, PTYName: "ttys016", State: classify.Unattached, Proven: true},
		Verdict: plan.Reclaim, Method: method,
	}
}

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
	ok := lldbOutcome{NullFD: 31, Calls: map[int]lldbCall{5: {Ran: true, Ret: 5}}}
	closed := lldbOutcome{NullFD: -1, Calls: map[int]lldbCall{5: {Ran: true, Ret: 0}}}
	failedDup := lldbOutcome{NullFD: 31, Calls: map[int]lldbCall{5: {Ran: true, Ret: -1}}}
	noAttach := lldbOutcome{NullFD: -1, AttachError: "attach failed (Not allowed to attach to process.)", Calls: map[int]lldbCall{}}
	stillPTY := libproc.FDNow{Kind: libproc.FDPTY, Side: snapshot.Master, Index: 16}
	cases := []struct {
		name   string
		it     plan.Item
		now    libproc.FDNow
		out    lldbOutcome
		result string
		reason string
	}{
		{"dup2 over /dev/null", devnull, libproc.FDNow{Kind: libproc.FDDevNull}, ok, Done, ""},
		{"closed", closing, libproc.FDNow{Kind: libproc.FDClosed}, closed, Done, ""},
		{"/dev/null even if the output was lost", devnull, libproc.FDNow{Kind: libproc.FDDevNull}, lldbOutcome{NullFD: -1}, Done, ""},
		{"dup2 failed", devnull, stillPTY, failedDup, Failed, "dup2 returned -1 in the holder; fd 5 still holds the master of ttys016"},
		{"open failed", devnull, stillPTY, lldbOutcome{NullFD: -1, NullSeen: true, Calls: map[int]lldbCall{5: {Ran: true, Ret: -1}}}, Failed, "open /dev/null returned -1 in the holder"},
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

func TestPickLLDB(t *testing.T) {
	have := map[string]bool{"/Library/Developer/CommandLineTools/usr/bin/lldb": true}
	exists := func(p string) bool { return have[p] }
	got, err := pickLLDB(append([]string{"/Applications/Xcode-beta.app/Contents/Developer/usr/bin/lldb"}, lldbFallbacks...), exists)
	if err != nil || got != "/Library/Developer/CommandLineTools/usr/bin/lldb" {
		t.Errorf("%q %v", got, err)
	}
	if _, err := pickLLDB(lldbFallbacks, func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "xcode-select --install") {
		t.Errorf("missing lldb: %v", err)
	}
}
