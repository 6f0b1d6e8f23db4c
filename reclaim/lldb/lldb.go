// Package lldb is the macOS in-place mechanism, beside reclaim/inject and
// shaped like it: a target (pid, fds, method) in, per-fd results out.
// macOS has no ptrace injector: it drives lldb, Apple's documented
// debugger, to call close or dup2 inside the holder. Building the command
// line and reading the output are plain text, tested on Linux; only
// running lldb is darwin code. Whether an fd was released is decided by
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
// /dev/null between commands of one session.
const nullVar = "$ptyreclaim_null"

// StepKind is what one lldb command of the script does.
type StepKind int

const (
	StepAttach    StepKind = iota + 1 // process attach
	StepOpenNull                      // open /dev/null into nullVar
	StepPrintNull                     // print nullVar
	StepRelease                       // close(fd) or dup2(null, fd)
	StepCloseNull                     // close nullVar
	StepOther                         // thread select, detach
)

// Step is one command of the script, kept to match its echo in the
// output.
type Step struct {
	Kind    StepKind
	FD      int // the fd a StepRelease works on
	Command string
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
const (
	callOpen  = "((int (*)(const char *, int))open)"
	callDup2  = "((int (*)(int, int))dup2)"
	callClose = "((int (*)(int))close)"
	oRDWR     = 2 // O_RDWR in macOS <sys/fcntl.h>
)

// Script builds the lldb arguments that release fds inside pid, and
// the steps to read the output against. method is policy.MethodDevNull
// (dup2 an fd on /dev/null over each, keeping the fd numbers owned) or
// policy.MethodClose.
//
// lldb runs without any init file or script of the target's (root must not
// run code the target's owner wrote), attaches, selects thread 1, runs one
// call per fd on that thread only, and detaches; -k detaches too if the
// target crashes in batch mode.
func Script(pid int, fds []int, method policy.Method, timeout time.Duration) ([]string, []Step) {
	expr := expr(timeout)
	steps := []Step{
		{Kind: StepAttach, Command: fmt.Sprintf("process attach --pid %d", pid)},
		{Kind: StepOther, Command: "thread select 1"},
	}
	if method == policy.MethodClose {
		for _, fd := range fds {
			steps = append(steps, Step{Kind: StepRelease, FD: fd, Command: fmt.Sprintf("%s%s(%d)", expr, callClose, fd)})
		}
	} else {
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
	res := Outcome{NullFD: -1, Calls: map[int]Call{}}
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
			case StepOpenNull, StepPrintNull:
				if res.NullErr == "" {
					res.NullErr = msg
				}
			case StepRelease:
				if c := res.Calls[cur.FD]; c.Err == "" {
					c.Err = msg
					res.Calls[cur.FD] = c
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
		case StepPrintNull:
			res.NullFD, res.NullSeen = v, true
		case StepRelease:
			c := res.Calls[cur.FD]
			c.Ran, c.Ret = true, v
			res.Calls[cur.FD] = c
		}
	}
	return res
}

// why explains, for an fd lldb did not release, what its output says.
func (o Outcome) Why(fd int, method policy.Method) string {
	switch c := o.Calls[fd]; {
	case o.AttachError != "":
		return "lldb could not attach: " + o.AttachError
	case method != policy.MethodClose && o.NullErr != "":
		return "lldb could not open /dev/null in the holder: " + o.NullErr
	case method != policy.MethodClose && o.NullSeen && o.NullFD < 0:
		return "open /dev/null returned -1 in the holder"
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
	Method policy.Method // policy.MethodDevNull or policy.MethodClose
	// Timeout bounds each call lldb runs in the holder.
	Timeout time.Duration
}

// Release runs one lldb session that releases t's fds and returns what its
// output says per fd, and how long lldb held the process.
func Release(ctx context.Context, run Runner, t Target) (Outcome, time.Duration, error) {
	args, steps := Script(t.PID, t.FDs, t.Method, t.Timeout)
	start := time.Now()
	text, err := run(ctx, args)
	held := time.Since(start)
	if err != nil {
		return Outcome{}, held, err
	}
	return Parse(text, steps), held, nil
}
