// Package lldb is the macOS in-place mechanism, beside reclaim/inject and
// shaped like it: a target (pid, fds, method) in, per-fd results out.
// macOS has no ptrace injector: it drives lldb, Apple's documented
// debugger, to call close or dup2 inside the holder (and, for the
// pollable replacements hangup and quiet, socketpair and kevent).
// Building the command line and reading the output are plain text, tested
// on Linux; only running lldb is darwin code. Whether an fd was released is decided by
// the caller, from libproc, never from this output alone.
package lldb

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
)

// nullVar is the lldb persistent variable holding the holder's fd on
// /dev/null between commands of one session; replVar and peerVar hold the
// two ends of the socket pair of hangup and quiet.
const (
	nullVar = "$ptyreclaim_null"
	replVar = "$ptyreclaim_repl"
	peerVar = "$ptyreclaim_peer"
)

// StepKind is what one lldb command of the script does.
type StepKind int

const (
	StepAttach    StepKind = iota + 1 // process attach
	StepOpenNull                      // open /dev/null into nullVar
	StepPrintNull                     // print nullVar
	StepOpenRepl                      // make the hangup or quiet socket pair into replVar
	StepRelease                       // close(fd) or dup2(null or repl, fd)
	StepAdd                           // kevent EV_ADD of the replacement
	StepCloseNull                     // close nullVar or replVar
	StepOther                         // thread select, declarations, detach
)

// Step is one command of the script, kept to match its echo in the
// output.
type Step struct {
	Kind StepKind
	FD   int // the fd a StepRelease or StepAdd works on
	// Reg is the registration a StepAdd makes.
	Reg     KEvent
	Command string
}

// KEvent is one kqueue registration of a released fd, to be made again on
// its replacement: the kqueue's fd in the holder, the fd, and the filter,
// flags (with EV_ADD), filter flags, data and udata of struct kevent.
type KEvent struct {
	KQ, FD int
	Filter int16
	Flags  uint16
	FFlags uint32
	Data   int64
	UData  uint64
}

// words is the struct kevent of r as four 64-bit words (LP64, both
// arm64 and x86-64 macOS): ident @0; filter @8, flags @10, fflags @12;
// data @16; udata @24. lldb has no type for struct kevent without debug
// info, so the expression builds it as an array.
func (r KEvent) words() [4]uint64 {
	return [4]uint64{uint64(r.FD), uint64(uint16(r.Filter)) | uint64(r.Flags)<<16 | uint64(r.FFlags)<<32, uint64(r.Data), r.UData}
}

// expr prefixes every expression. Each option is documented in
// `help expression`:
//
//	-a false  (--all-threads)  run on the selected thread only: the other
//	          threads stay stopped, even when the call times out;
//	-t N      (--timeout)      give up after N µs (on that one thread);
//	-u true   (--unwind-on-error) restore the thread if the call faults;
//	-i true   (--ignore-breakpoints) the session sets none, but a
//	          breakpoint the call might hit must not leave it half run.
func expr(timeout time.Duration) string {
	return fmt.Sprintf("expression -a false -t %d -u true -i true -- ", timeout.Microseconds())
}

// Calls go through a function pointer cast to the libc prototype. Without
// debug info lldb types an unknown function as variadic, and on arm64
// Apple passes variadic arguments on the stack, where close and dup2 would
// not find them.
// fcntl is variadic: its prototype says so, so that the third argument
// goes where Apple's arm64 ABI puts variadic ones (the stack).
const (
	callOpen       = "((int (*)(const char *, int))open)"
	callDup2       = "((int (*)(int, int))dup2)"
	callClose      = "((int (*)(int))close)"
	callSocketpair = "((int (*)(int, int, int, int *))socketpair)"
	callShutdown   = "((int (*)(int, int))shutdown)"
	callFcntl      = "((int (*)(int, int, ...))fcntl)"
	callKevent     = "((int (*)(int, const void *, int, void *, int, const void *))kevent)"
	oRDWR          = 2 // O_RDWR in macOS <sys/fcntl.h>
	afUNIX         = 1 // AF_UNIX, <sys/socket.h>
	sockStream     = 1 // SOCK_STREAM
	shutRD         = 0 // SHUT_RD
	fSETFD         = 2 // F_SETFD, <sys/fcntl.h>
	fdCLOEXEC      = 1 // FD_CLOEXEC
)

// Script builds the lldb arguments that release t's fds inside t.PID,
// and the steps to read the output against. t.Method is
// policy.MethodDevNull (dup2 an fd on /dev/null over each, keeping the fd
// numbers owned), policy.MethodClose, or policy.MethodHangup or
// policy.MethodQuiet: dup2 one end of a Unix socket pair over each fd
// (hangup: shut down for reading, so reads say EOF and kqueue says
// EV_EOF), keep the other end open in the holder (close-on-exec), and
// make every kqueue registration in t.Regs again on the replacement, with
// the same filter, flags and udata: dup2 removed the old file's knotes
// with it (knote_fdclose), so no stale event of the PTY reaches the loop.
//
// lldb runs without any init file or script of the target's (root must not
// run code the target's owner wrote), attaches, selects thread 1, runs one
// call per fd on that thread only, and detaches; -k detaches too if the
// target crashes in batch mode.
func Script(t Target) ([]string, []Step) {
	pid, fds, method := t.PID, t.FDs, t.Method
	expr := expr(t.Timeout)
	steps := []Step{
		{Kind: StepAttach, Command: fmt.Sprintf("process attach --pid %d", pid)},
		{Kind: StepOther, Command: "thread select 1"},
	}
	switch method {
	case policy.MethodClose:
		for _, fd := range fds {
			steps = append(steps, Step{Kind: StepRelease, FD: fd, Command: fmt.Sprintf("%s%s(%d)", expr, callClose, fd)})
		}
	case policy.MethodHangup, policy.MethodQuiet:
		// One expression makes the pair and readies it, or closes both
		// ends and leaves replVar -1: every later call then does nothing.
		hangup := ""
		if method == policy.MethodHangup {
			hangup = fmt.Sprintf(" && %s(sv[0], %d) == 0", callShutdown, shutRD)
		}
		steps = append(steps,
			Step{Kind: StepOther, Command: fmt.Sprintf("%sint %s = -1", expr, replVar)},
			Step{Kind: StepOther, Command: fmt.Sprintf("%sint %s = -1", expr, peerVar)},
			Step{Kind: StepOpenRepl, Command: fmt.Sprintf("%sint sv[2] = {-1, -1}; "+
				"if (%s(%d, %d, 0, sv) == 0) { "+
				"if (%s(sv[1], %d, %d) != -1 && %s(sv[0], %d, %d) != -1%s) { %s = sv[0]; %s = sv[1]; } "+
				"else { %s(sv[0]); %s(sv[1]); } } %s",
				expr, callSocketpair, afUNIX, sockStream,
				callFcntl, fSETFD, fdCLOEXEC, callFcntl, fSETFD, fdCLOEXEC, hangup, replVar, peerVar,
				callClose, callClose, replVar)},
		)
		for _, fd := range fds {
			steps = append(steps, Step{Kind: StepRelease, FD: fd,
				Command: fmt.Sprintf("%s%s < 0 ? -1 : %s(%s, %d)", expr, replVar, callDup2, replVar, fd)})
			for _, r := range t.Regs {
				if r.FD != fd {
					continue
				}
				w := r.words()
				steps = append(steps, Step{Kind: StepAdd, FD: fd, Reg: r,
					Command: fmt.Sprintf("%sunsigned long long ev[4] = {%dULL, %dULL, %dULL, %dULL}; %s < 0 ? -1 : %s(%d, ev, 1, (void *)0, 0, (const void *)0)",
						expr, w[0], w[1], w[2], w[3], replVar, callKevent, r.KQ)})
			}
		}
		steps = append(steps, Step{Kind: StepCloseNull,
			Command: fmt.Sprintf("%s%s < 0 ? -1 : %s(%s)", expr, replVar, callClose, replVar)})
	default:
		steps = append(steps,
			Step{Kind: StepOpenNull, Command: fmt.Sprintf(`%sint %s = %s("/dev/null", %d)`, expr, nullVar, callOpen, oRDWR)},
			Step{Kind: StepPrintNull, Command: expr + nullVar},
		)
		for _, fd := range fds {
			steps = append(steps, Step{Kind: StepRelease, FD: fd,
				Command: fmt.Sprintf("%s%s < 0 ? -1 : %s(%s, %d)", expr, nullVar, callDup2, nullVar, fd)})
		}
		steps = append(steps, Step{Kind: StepCloseNull,
			Command: fmt.Sprintf("%s%s < 0 ? -1 : %s(%s)", expr, nullVar, callClose, nullVar)})
	}
	steps = append(steps, Step{Kind: StepOther, Command: "process detach"})

	args := []string{
		"--batch", "--no-lldbinit", "--no-use-colors",
		"-O", "settings set interpreter.echo-commands true",
		"-O", "settings set interpreter.stop-command-source-on-error false",
		"-O", "settings set target.load-script-from-symbol-file false",
		"-O", "settings set target.load-cwd-lldbinit false",
		"-k", "process detach",
	}
	for _, s := range steps {
		args = append(args, "-o", s.Command)
	}
	return args, steps
}

// Call is what lldb printed for one release call.
type Call struct {
	Ran bool // lldb printed a value
	Ret int  // that value: 0 for close, the fd for dup2, -1 on failure
	Err string
}

// Outcome is what a session's output says.
type Outcome struct {
	// AttachError is lldb's first error after the attach, "" when attached.
	AttachError string
	// NullFD is the holder's fd on /dev/null, -1 when not known; NullSeen
	// says lldb printed it.
	NullFD   int
	NullSeen bool
	// NullErr is lldb's error when opening /dev/null failed.
	NullErr string
	// Calls holds the release calls by fd.
	Calls map[int]Call
	// Adds holds the kevent calls that registered a replacement, by
	// registration.
	Adds map[KEvent]Call
}

// valueLine matches how lldb prints an int result: "(int) $0 = 5" or
// "(int) $ptyreclaim_null = 7".
var valueLine = regexp.MustCompile(`^\(int\) \$[A-Za-z0-9_]+ = (-?[0-9]+)\s*$`)

// Parse reads a session's output. lldb echoes each command as
// "(lldb) <command>" (interpreter.echo-commands), so a value or an error
// line belongs to the command echoed last. Lines it does not know are
// ignored; verification through libproc, not this output, decides what
// happened.
func Parse(out string, steps []Step) Outcome {
	byCommand := make(map[string]*Step, len(steps))
	for i := range steps {
		byCommand[steps[i].Command] = &steps[i]
	}
	res := Outcome{NullFD: -1, Calls: map[int]Call{}, Adds: map[KEvent]Call{}}
	var cur *Step
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if cmd, ok := strings.CutPrefix(line, "(lldb) "); ok {
			cur = byCommand[strings.TrimSpace(cmd)]
			continue
		}
		if cur == nil {
			continue
		}
		if msg, ok := strings.CutPrefix(line, "error: "); ok {
			switch cur.Kind {
			case StepAttach:
				if res.AttachError == "" {
					res.AttachError = msg
				}
			case StepOpenNull, StepPrintNull, StepOpenRepl:
				if res.NullErr == "" {
					res.NullErr = msg
				}
			case StepRelease:
				if c := res.Calls[cur.FD]; c.Err == "" {
					c.Err = msg
					res.Calls[cur.FD] = c
				}
			case StepAdd:
				if c := res.Adds[cur.Reg]; c.Err == "" {
					c.Err = msg
					res.Adds[cur.Reg] = c
				}
			}
			continue
		}
		m := valueLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		switch cur.Kind {
		case StepPrintNull, StepOpenRepl:
			res.NullFD, res.NullSeen = v, true
		case StepRelease:
			c := res.Calls[cur.FD]
			c.Ran, c.Ret = true, v
			res.Calls[cur.FD] = c
		case StepAdd:
			c := res.Adds[cur.Reg]
			c.Ran, c.Ret = true, v
			res.Adds[cur.Reg] = c
		}
	}
	return res
}

// why explains, for an fd lldb did not release, what its output says.
func (o Outcome) Why(fd int, method policy.Method) string {
	could, failed := "open /dev/null", "open /dev/null returned -1"
	if method == policy.MethodHangup || method == policy.MethodQuiet {
		could, failed = "make the "+string(method)+" socket pair", "making the "+string(method)+" socket pair failed"
	}
	switch c := o.Calls[fd]; {
	case o.AttachError != "":
		return "lldb could not attach: " + o.AttachError
	case method != policy.MethodClose && o.NullErr != "":
		return "lldb could not " + could + " in the holder: " + o.NullErr
	case method != policy.MethodClose && o.NullSeen && o.NullFD < 0:
		return failed + " in the holder"
	case c.Err != "":
		return "lldb: " + c.Err
	case c.Ran && c.Ret < 0:
		if method == policy.MethodClose {
			return "close returned -1 in the holder"
		}
		return "dup2 returned -1 in the holder"
	case !c.Ran:
		return "lldb printed no result for this fd"
	}
	return "the call returned but the fd did not change"
}

// AddProblem says what lldb's output says went wrong with a kevent
// registration of a replacement, "" when it returned 0.
func (o Outcome) AddProblem(r KEvent) string {
	c := o.Adds[r]
	switch {
	case c.Err != "":
		return "lldb: " + c.Err
	case !c.Ran:
		return "lldb printed no result for it"
	case c.Ret != 0:
		return "kevent returned -1 in the holder"
	}
	return ""
}

// Fallbacks are where lldb lives when xcode-select names no developer
// directory: the Command Line Tools, then Xcode.
var Fallbacks = []string{
	"/Library/Developer/CommandLineTools/usr/bin/lldb",
	"/Applications/Xcode.app/Contents/Developer/usr/bin/lldb",
}

// Pick returns the first candidate that exists, or an error that says
// how to get lldb.
func Pick(candidates []string, exists func(string) bool) (string, error) {
	for _, c := range candidates {
		if exists(c) {
			return c, nil
		}
	}
	return "", fmt.Errorf("lldb not found (looked in %s): in-place release needs the Xcode Command Line Tools (xcode-select --install)", strings.Join(candidates, ", "))
}

// Runner runs lldb with args and returns its output; the error is for an
// lldb that could not run (missing, timed out), not for a failed attach.
type Runner func(ctx context.Context, args []string) (string, error)

// Target is one release inside one process.
type Target struct {
	PID    int
	FDs    []int
	Method policy.Method // policy.MethodDevNull, MethodClose, MethodHangup or MethodQuiet
	// Regs are the kqueue registrations of the fds, made again on the
	// replacement (hangup and quiet only).
	Regs []KEvent
	// Timeout bounds each call lldb runs in the holder.
	Timeout time.Duration
}

// Release runs one lldb session that releases t's fds and returns what its
// output says per fd, and how long lldb held the process.
func Release(ctx context.Context, run Runner, t Target) (Outcome, time.Duration, error) {
	args, steps := Script(t)
	start := time.Now()
	text, err := run(ctx, args)
	held := time.Since(start)
	if err != nil {
		return Outcome{}, held, err
	}
	return Parse(text, steps), held, nil
}
