package lldb

import (
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
)

func TestLLDBScriptDevNull(t *testing.T) {
	args, steps := Script(4242, []int{5, 9}, policy.MethodDevNull, 2*time.Second)
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
	if len(steps) != 8 || steps[4].Kind != StepRelease || steps[4].FD != 5 || steps[5].FD != 9 {
		t.Errorf("steps: %+v", steps)
	}
}

func TestLLDBScriptClose(t *testing.T) {
	args, _ := Script(7, []int{3}, policy.MethodClose, 500*time.Millisecond)
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
	_, steps := Script(4242, []int{5, 9}, policy.MethodDevNull, 2*time.Second)
	got := Parse(strings.ReplaceAll(devNullSession, "\n", "\r\n"), steps)
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
	_, steps := Script(88, []int{4}, policy.MethodClose, time.Second)
	out := `(lldb) process attach --pid 88
error: attach failed: attach failed (Not allowed to attach to process.  Look in the console messages (Console.app), near the debugserver entries, when the attach failed.)
(lldb) thread select 1
error: invalid process
(lldb) expression -a false -t 1000000 -u true -i true -- ((int (*)(int))close)(4)
error: Command requires a current process.
(lldb) process detach
error: invalid process
`
	got := Parse(out, steps)
	if !strings.HasPrefix(got.AttachError, "attach failed: attach failed (Not allowed") {
		t.Errorf("attach error: %q", got.AttachError)
	}
	if why := got.Why(4, policy.MethodClose); !strings.HasPrefix(why, "lldb could not attach: ") {
		t.Errorf("why: %q", why)
	}
}

func TestParseLLDBIgnoresForeignLines(t *testing.T) {
	_, steps := Script(1, []int{3}, policy.MethodClose, time.Second)
	// A value printed before any of our echoes, or after an unknown
	// command, belongs to no fd.
	got := Parse("(int) $0 = 3\n(lldb) bt\n(int) $1 = 0\n", steps)
	if len(got.Calls) != 0 || got.NullFD != -1 {
		t.Errorf("%+v", got)
	}
}

func TestPickLLDB(t *testing.T) {
	have := map[string]bool{"/Library/Developer/CommandLineTools/usr/bin/lldb": true}
	exists := func(p string) bool { return have[p] }
	got, err := Pick(append([]string{"/Applications/Xcode-beta.app/Contents/Developer/usr/bin/lldb"}, Fallbacks...), exists)
	if err != nil || got != "/Library/Developer/CommandLineTools/usr/bin/lldb" {
		t.Errorf("%q %v", got, err)
	}
	if _, err := Pick(Fallbacks, func(string) bool { return false }); err == nil || !strings.Contains(err.Error(), "xcode-select --install") {
		t.Errorf("missing lldb: %v", err)
	}
}
