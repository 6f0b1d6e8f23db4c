package runtimes

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/reclaim/internal/testproc"
)

// startPerl runs testdata/perl/app.pl with Debian's perl and libev-perl
// (EV): libev's epoll backend, the one that turns an EPERM from epoll_ctl
// into "always ready".
func startPerl(t testing.TB, events string) *target {
	t.Helper()
	if out, err := exec.Command("/usr/bin/perl", "-MEV", "-e", "exit(EV::backend() == EV::BACKEND_EPOLL ? 0 : 1)").CombinedOutput(); err != nil {
		t.Fatalf("perl EV with the epoll backend: %v %s (install libev-perl as .ci/run does)", err, out)
	}
	cmd := exec.Command("/usr/bin/perl", "testdata/perl/app.pl")
	cmd.Env = append(os.Environ(), "EVENTS="+events)
	p := testproc.StartCmd(t, cmd)
	port, err := strconv.Atoi(p.Ready)
	if err != nil {
		t.Fatalf("ready line %q", p.Ready)
	}
	return &target{Proc: p, PID: p.PID, Release: []int{p.PID}, Port: port, ExitCode: 17}
}

var perlRuntime = runtime{Name: "perl-ev", Start: startPerl, Unwatched: true}

func TestPerlEV(t *testing.T) { runAll(t, perlRuntime) }
