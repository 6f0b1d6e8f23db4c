package act

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ptyreclaim/ptyreclaim/policy"
	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
	"github.com/ptyreclaim/ptyreclaim/reclaim/plan"
)

// macOS has no ptrace injector: in-place release drives lldb, Apple's
// documented debugger, to call close or dup2 inside the holder. This file
// builds the lldb command line and reads its output; both are plain text,
// tested on Linux. The darwin glue only runs it.

// lldbNullVar is the lldb persistent variable holding the holder's fd on
// /dev/null between commands of one session.
const lldbNullVar = "$ptyreclaim_null"

// lldbStepKind is what one lldb command of the script does.
type lldbStepKind int

const (
	stepAttach    lldbStepKind = iota + 1 // process attach
	stepOpenNull                          // open /dev/null into lldbNullVar
	stepPrintNull                         // print lldbNullVar
	stepRelease                           // close(fd) or dup2(null, fd)
	stepCloseNull                         // close lldbNullVar
	stepOther                             // thread select, detach
)

// lldbStep is one command of the script, kept to match its echo in the
// output.
type lldbStep struct {
	Kind    lldbStepKind
	FD      int // the fd a stepRelease works on
	Command string
}

// lldbExpr prefixes every expression. Each option is documented in
// `help expression`:
//
//	-a false  (--all-threads)  run on the selected thread only: the other
//	          threads stay stopped, even when the call times out;
//	-t N      (--timeout)      give up after N µs (on that one thread);
//	-u true   (--unwind-on-error) restore the thread if the call faults;
//	-i true   (--ignore-breakpoints) the session sets none, but a
//	          breakpoint the call might hit must not leave it half run.
func lldbExpr(timeout time.Duration) string {
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

// lldbScript builds the lldb arguments that release fds inside pid, and
// the steps to read the output against. method is policy.MethodDevNull
// (dup2 an fd on /dev/null over each, keeping the fd numbers owned) or
// policy.MethodClose.
//
// lldb runs without any init file or script of the target's (root must not
// run code the target's owner wrote), attaches, selects thread 1, runs one
// call per fd on that thread only, and detaches; -k detaches too if the
// target crashes in batch mode.
func lldbScript(pid int, fds []int, method string, timeout time.Duration) ([]string, []lldbStep) {
	expr := lldbExpr(timeout)
	steps := []lldbStep{
		{Kind: stepAttach, Command: fmt.Sprintf("process attach --pid %d", pid)},
		{Kind: stepOther, Command: "thread select 1"},
	}
	if method == policy.MethodClose {
		for _, fd := range fds {
			steps = append(steps, lldbStep{Kind: stepRelease, FD: fd, Command: fmt.Sprintf("%s%s(%d)", expr, callClose, fd)})
		}
	} else {
		steps = append(steps,
			lldbStep{Kind: stepOpenNull, Command: fmt.Sprintf(`%sint %s = %s("/dev/null", %d)`, expr, lldbNullVar, callOpen, oRDWR)},
			lldbStep{Kind: stepPrintNull, Command: expr + lldbNullVar},
		)
		for _, fd := range fds {
			steps = append(steps, lldbStep{Kind: stepRelease, FD: fd,
				Command: fmt.Sprintf("%s%s < 0 ? -1 : %s(%s, %d)", expr, lldbNullVar, callDup2, lldbNullVar, fd)})
		}
		steps = append(steps, lldbStep{Kind: stepCloseNull,
			Command: fmt.Sprintf("%s%s < 0 ? -1 : %s(%s)", expr, lldbNullVar, callClose, lldbNullVar)})
	}
	steps = append(steps, lldbStep{Kind: stepOther, Command: "process detach"})

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

// lldbCall is what lldb printed for one release call.
type lldbCall struct {
	Ran bool // lldb printed a value
	Ret int  // that value: 0 for close, the fd for dup2, -1 on failure
	Err string
}

// lldbOutcome is what a session's output says.
type lldbOutcome struct {
	// AttachError is lldb's first error after the attach, "" when attached.
	AttachError string
	// NullFD is the holder's fd on /dev/null, -1 when not known; NullSeen
	// says lldb printed it.
	NullFD   int
	NullSeen bool
	// NullErr is lldb's error when opening /dev/null failed.
	NullErr string
	// Calls holds the release calls by fd.
	Calls map[int]lldbCall
}

// lldbValue matches how lldb prints an int result: "(int) $0 = 5" or
// "(int) $ptyreclaim_null = 7".
var lldbValue = regexp.MustCompile(`^\(int\) \$[A-Za-z0-9_]+ = (-?[0-9]+)\s*$`)

// parseLLDB reads a session's output. lldb echoes each command as
// "(lldb) <command>" (interpreter.echo-commands), so a value or an error
// line belongs to the command echoed last. Lines it does not know are
// ignored; verification through libproc, not this output, decides what
// happened.
func parseLLDB(out string, steps []lldbStep) lldbOutcome {
	byCommand := make(map[string]*lldbStep, len(steps))
	for i := range steps {
		byCommand[steps[i].Command] = &steps[i]
	}
	res := lldbOutcome{NullFD: -1, Calls: map[int]lldbCall{}}
	var cur *lldbStep
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
			case stepAttach:
				if res.AttachError == "" {
					res.AttachError = msg
				}
			case stepOpenNull, stepPrintNull:
				if res.NullErr == "" {
					res.NullErr = msg
				}
			case stepRelease:
				if c := res.Calls[cur.FD]; c.Err == "" {
					c.Err = msg
					res.Calls[cur.FD] = c
				}
			}
			continue
		}
		m := lldbValue.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		v, err := strconv.Atoi(m[1])
		if err != nil {
			continue
		}
		switch cur.Kind {
		case stepPrintNull:
			res.NullFD, res.NullSeen = v, true
		case stepRelease:
			c := res.Calls[cur.FD]
			c.Ran, c.Ret = true, v
			res.Calls[cur.FD] = c
		}
	}
	return res
}

// why explains, for an fd lldb did not release, what its output says.
func (o lldbOutcome) why(fd int, method string) string {
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

// checkPlanned returns why an item's fd must not be touched, or "": it
// must still be the planned side of the planned PTY (minor number).
func checkPlanned(it plan.Item, now libproc.FDNow) string {
	if now.Kind == libproc.FDPTY && now.Side == it.Side && now.Index == it.PTY.Index {
		return ""
	}
	return fmt.Sprintf("fd %d is now %s, not the %s of %s that was planned: it changed since the scan", it.FD, now, it.Side, ptyLabel(it))
}

// released decides an item's result from what its fd is after lldb
// detached. The fd is the truth; lldb's output only explains a failure.
// /dev/null or closed is done. Still the planned PTY is failed. Anything
// else means the holder reused the fd number after it was released (done
// when lldb's call succeeded) or changed it behind lldb's back (failed).
func released(it plan.Item, now libproc.FDNow, out lldbOutcome) (string, string) {
	planned := now.Kind == libproc.FDPTY && now.Side == it.Side && now.Index == it.PTY.Index
	switch {
	case now.Kind == libproc.FDDevNull:
		return Done, ""
	case now.Kind == libproc.FDClosed:
		if it.Method == policy.MethodClose {
			return Done, ""
		}
		return Done, "the fd is closed now (the holder closed it after the swap)"
	case planned:
		return Failed, fmt.Sprintf("%s; fd %d still holds the %s of %s", out.why(it.FD, it.Method), it.FD, it.Side, ptyLabel(it))
	}
	if c := out.Calls[it.FD]; c.Ran && c.Ret >= 0 && c.Err == "" {
		return Done, fmt.Sprintf("released; the holder has reused fd %d since (now %s)", it.FD, now)
	}
	return Failed, fmt.Sprintf("%s; fd %d is now %s", out.why(it.FD, it.Method), it.FD, now)
}

// ptyLabel names an item's PTY as people know it.
func ptyLabel(it plan.Item) string {
	if it.PTYName != "" {
		return it.PTYName
	}
	return fmt.Sprintf("ttys%03d", it.PTY.Index)
}

// lldbFallbacks are where lldb lives when xcode-select names no developer
// directory: the Command Line Tools, then Xcode.
var lldbFallbacks = []string{
	"/Library/Developer/CommandLineTools/usr/bin/lldb",
	"/Applications/Xcode.app/Contents/Developer/usr/bin/lldb",
}

// pickLLDB returns the first candidate that exists, or an error that says
// how to get lldb.
func pickLLDB(candidates []string, exists func(string) bool) (string, error) {
	for _, c := range candidates {
		if exists(c) {
			return c, nil
		}
	}
	return "", fmt.Errorf("lldb not found (looked in %s): in-place release needs the Xcode Command Line Tools (xcode-select --install)", strings.Join(candidates, ", "))
}
