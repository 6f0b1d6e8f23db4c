package runtimes

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// startPerl runs testdata/perl/app.pl with Debian's perl and its EV
// (libev-perl, installed by .ci/run).
func startPerl(t testing.TB, events string) *target {
	t.Helper()
	cmd := exec.Command("/usr/bin/perl", "testdata/perl/app.pl")
	cmd.Env = append(os.Environ(), "EVENTS="+events)
	p := testproc.StartCmd(t, cmd)
	port, err := strconv.Atoi(p.Ready)
	if err != nil {
		t.Fatalf("ready line %q", p.Ready)
	}
	return &target{Proc: p, PID: p.PID, Release: []int{p.PID}, Port: port, ExitCode: 3}
}

// perlRuntime: the late pair is unwatched at the release, so every variant
// has something to do.
var perlRuntime = runtime{Name: "perl-ev", Start: startPerl, Unwatched: true}

func TestPerlEV(t *testing.T) { runAll(t, perlRuntime) }
