package lldb

import (
	"strings"
	"testing"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
)

func TestLLDBScriptDevNull(t *testing.T) {
	args, steps := Script(Target{PID: 4242, FDs: []int{5, 9}, Method: policy.MethodDevNull, Timeout: 2 * time.Second})
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
	args, _ := Script(Target{PID: 7, FDs: []int{3}, Method: policy.MethodClose, Timeout: 500 * time.Millisecond})
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
	_, steps := Script(Target{PID: 4242, FDs: []int{5, 9}, Method: policy.MethodDevNull, Timeout: 2 * time.Second})
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
	_, steps := Script(Target{PID: 88, FDs: []int{4}, Method: policy.MethodClose, Timeout: time.Second})
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
	_, steps := Script(Target{PID: 1, FDs: []int{3}, Method: policy.MethodClose, Timeout: time.Second})
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

// TestLLDBScriptHangup: a socket pair shut down for reading, its other end
// kept close-on-exec, dup2 over each fd, then every kqueue registration of
// that fd made again with the same filter, flags and udata, and the
// temporary fd closed. A pair that could not be readied leaves replVar -1
// and every later call does nothing.
func TestLLDBScriptHangup(t *testing.T) {
	regs := []KEvent{
		{KQ: 4, FD: 13, Filter: -1, Flags: 0x0005, UData: 0xfeed}, // EVFILT_READ, EV_ADD|EV_ENABLE
		{KQ: 4, FD: 13, Filter: -2, Flags: 0x0025, FFlags: 1, Data: 64, UData: 0},
		{KQ: 9, FD: 20, Filter: -1, Flags: 0x0009}, // another fd's: not in this script
	}
	args, steps := Script(Target{PID: 4242, FDs: []int{13, 14}, Method: policy.MethodHangup, Regs: regs, Timeout: 2 * time.Second})
	e := "expression -a false -t 2000000 -u true -i true -- "
	want := []string{
		"process attach --pid 4242",
		"thread select 1",
		e + "int $ptyreclaim_repl = -1",
		e + "int $ptyreclaim_peer = -1",
		e + "int sv[2] = {-1, -1}; if (((int (*)(int, int, int, int *))socketpair)(1, 1, 0, sv) == 0) { " +
			"if (((int (*)(int, int, ...))fcntl)(sv[1], 2, 1) != -1 && ((int (*)(int, int, ...))fcntl)(sv[0], 2, 1) != -1 && ((int (*)(int, int))shutdown)(sv[0], 0) == 0) { $ptyreclaim_repl = sv[0]; $ptyreclaim_peer = sv[1]; } " +
			"else { ((int (*)(int))close)(sv[0]); ((int (*)(int))close)(sv[1]); } } $ptyreclaim_repl",
		e + "$ptyreclaim_repl < 0 ? -1 : ((int (*)(int, int))dup2)($ptyreclaim_repl, 13)",
		// ident 13; filter 0xffff | flags 0x5<<16; data 0; udata 0xfeed
		e + "unsigned long long ev[4] = {13ULL, 393215ULL, 0ULL, 65261ULL}; $ptyreclaim_repl < 0 ? -1 : ((int (*)(int, const void *, int, void *, int, const void *))kevent)(4, ev, 1, (void *)0, 0, (const void *)0)",
		// filter 0xfffe | flags 0x25<<16 | fflags 1<<32; data 64
		e + "unsigned long long ev[4] = {13ULL, 4297457662ULL, 64ULL, 0ULL}; $ptyreclaim_repl < 0 ? -1 : ((int (*)(int, const void *, int, void *, int, const void *))kevent)(4, ev, 1, (void *)0, 0, (const void *)0)",
		e + "$ptyreclaim_repl < 0 ? -1 : ((int (*)(int, int))dup2)($ptyreclaim_repl, 14)",
		e + "$ptyreclaim_repl < 0 ? -1 : ((int (*)(int))close)($ptyreclaim_repl)",
		"process detach",
	}
	var got []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-o" {
			got = append(got, args[i+1])
			i++
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if uint64(0xffff)|0x5<<16 != 393215 || uint64(0xfffe)|0x25<<16|1<<32 != 4297457662 {
		t.Fatal("the expected words are miscomputed")
	}
	adds := 0
	for _, s := range steps {
		if s.Kind == StepAdd {
			adds++
			if s.FD != 13 || s.Reg.KQ != 4 {
				t.Errorf("add step %+v", s)
			}
		}
	}
	if adds != 2 {
		t.Errorf("%d add steps, want 2", adds)
	}

	// quiet: the same without the shutdown.
	args, _ = Script(Target{PID: 4242, FDs: []int{13}, Method: policy.MethodQuiet, Timeout: 2 * time.Second})
	if j := strings.Join(args, "\n"); strings.Contains(j, "shutdown") || !strings.Contains(j, "socketpair") {
		t.Errorf("quiet script:\n%s", j)
	}
}

func TestParseLLDBHangup(t *testing.T) {
	regs := []KEvent{{KQ: 4, FD: 13, Filter: -1, Flags: 0x0005, UData: 0xfeed}, {KQ: 4, FD: 13, Filter: -2, Flags: 0x0005}}
	_, steps := Script(Target{PID: 4242, FDs: []int{13}, Method: policy.MethodHangup, Regs: regs, Timeout: 2 * time.Second})
	var out strings.Builder
	out.WriteString("(lldb) process attach --pid 4242\nProcess 4242 stopped\n")
	for _, s := range steps[1:] {
		out.WriteString("(lldb) " + s.Command + "\n")
		switch s.Kind {
		case StepOpenRepl:
			out.WriteString("(int) $0 = 31\n")
		case StepRelease:
			out.WriteString("(int) $1 = 13\n")
		case StepAdd:
			if s.Reg.Filter == -1 {
				out.WriteString("(int) $2 = 0\n")
			} else {
				out.WriteString("(int) $3 = -1\n")
			}
		case StepCloseNull:
			out.WriteString("(int) $4 = 0\n")
		}
	}
	got := Parse(out.String(), steps)
	if got.NullFD != 31 || !got.NullSeen || got.Calls[13].Ret != 13 {
		t.Errorf("session: %+v", got)
	}
	if p := got.AddProblem(regs[0]); p != "" {
		t.Errorf("read registration: %q", p)
	}
	if p := got.AddProblem(regs[1]); p != "kevent returned -1 in the holder" {
		t.Errorf("write registration: %q", p)
	}
	if p := got.AddProblem(KEvent{KQ: 5}); p != "lldb printed no result for it" {
		t.Errorf("unknown registration: %q", p)
	}
	failed := Parse("(lldb) "+steps[4].Command+"\n(int) $0 = -1\n", steps)
	if why := failed.Why(13, policy.MethodHangup); why != "making the hangup socket pair failed in the holder" {
		t.Errorf("why: %q", why)
	}
}
