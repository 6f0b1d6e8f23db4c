package runtimes

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// startPython runs testdata/python/app.py with Debian's python3 (its
// asyncio), not whatever python3 comes first on PATH.
func startPython(t testing.TB, events string) *target {
	return startPythonEnv(t, events, "IGNORE_EOF=0")
}

// startPythonIgnoringEOF runs it with a reader that ignores an empty read.
func startPythonIgnoringEOF(t testing.TB, events string) *target {
	return startPythonEnv(t, events, "IGNORE_EOF=1")
}

func startPythonEnv(t testing.TB, events, env string) *target {
	t.Helper()
	cmd := exec.Command("/usr/bin/python3", "testdata/python/app.py")
	cmd.Env = append(os.Environ(), "EVENTS="+events, env)
	p := testproc.StartCmd(t, cmd)
	port, err := strconv.Atoi(p.Ready)
	if err != nil {
		t.Fatalf("ready line %q", p.Ready)
	}
	return &target{Proc: p, PID: p.PID, Release: []int{p.PID}, Port: port, ExitCode: 5}
}

var pythonRuntime = runtime{Name: "python", Start: startPython, Unwatched: true}

func TestPythonAsyncio(t *testing.T) { runAll(t, pythonRuntime) }

// pythonIgnoringEOF is the same program with a reader that ignores EOF:
// hangup makes its loop spin (a real hang-up, EIO, would make it raise at
// every turn instead); quiet never wakes it.
var pythonIgnoringEOF = runtime{Name: "python-eof-ignored", Start: startPythonIgnoringEOF, Unwatched: true, IgnoresEOF: true}

func TestPythonAsyncioIgnoringEOF(t *testing.T) { runAll(t, pythonIgnoringEOF) }
