package runtimes

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// buildC compiles testdata/<name>/app.c with gcc against a pkg-config
// library (Debian's libuv1-dev, libglib2.0-dev).
func buildC(t testing.TB, name, pkg string) string {
	t.Helper()
	flags, err := exec.Command("pkg-config", "--cflags", "--libs", pkg).Output()
	if err != nil {
		t.Fatalf("pkg-config %s: %v (install it as .ci/run does)", pkg, err)
	}
	bin := filepath.Join(t.TempDir(), name)
	args := append([]string{"-O1", "-Wall", "-Werror", "-o", bin, filepath.Join("testdata", name, "app.c")}, strings.Fields(string(flags))...)
	if out, err := exec.Command("gcc", append(args, "-lutil")...).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	return bin
}

func startC(name, pkg string, code int) func(t testing.TB, events string) *target {
	return func(t testing.TB, events string) *target {
		t.Helper()
		cmd := exec.Command(buildC(t, name, pkg))
		cmd.Env = append(os.Environ(), "EVENTS="+events)
		p := testproc.StartCmd(t, cmd)
		port, err := strconv.Atoi(p.Ready)
		if err != nil {
			t.Fatalf("ready line %q", p.Ready)
		}
		return &target{Proc: p, PID: p.PID, Release: []int{p.PID}, Port: port, ExitCode: code}
	}
}

var libuvRuntime = runtime{Name: "libuv", Start: startC("libuv", "libuv", 11), Unwatched: true}

func TestLibuvPTY(t *testing.T) { runAll(t, libuvRuntime) }

// GLib polls with poll(): its fds are in no epoll set, so ptyreclaim sees
// them as unwatched; the unwatched method must still suit it.
var glibRuntime = runtime{Name: "glib", Start: startC("glib", "glib-2.0", 13), Unwatched: true}

func TestGlibPTY(t *testing.T) { runAll(t, glibRuntime) }
