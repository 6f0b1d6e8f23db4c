//go:build linux

package inject

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// releaserEnv makes the test binary a releaser:
// "PID FD=METHOD,FD=METHOD,... POINT PAUSE-MS". At POINT it stops itself
// with SIGSTOP (the test then kills it); POINT "@frozen" instead writes a
// byte to fd 3 once the target is frozen, and "-" never pauses. PAUSE-MS,
// if not 0, is the routine's pause timeout. The report goes to stdout as
// JSON.
const releaserEnv = "INJECT_TEST_RELEASER"

type releaserOut struct {
	Report Report
	Err    string
}

func runReleaser() int {
	f := strings.Fields(os.Getenv(releaserEnv))
	if len(f) != 4 {
		fmt.Fprintln(os.Stderr, "bad", releaserEnv)
		return 2
	}
	pid, _ := strconv.Atoi(f[0])
	var fds []int
	methods := map[int]Method{}
	for _, s := range strings.Split(f[1], ",") {
		n, m, _ := strings.Cut(s, "=")
		fd, _ := strconv.Atoi(n)
		fds = append(fds, fd)
		methods[fd] = Method(m)
	}
	point := f[2]
	pauseMS, _ := strconv.Atoi(f[3])
	hook := func(p string) {
		switch {
		case p == point:
			syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		case point == "@frozen" && p == "frozen":
			os.NewFile(3, "signal").Write([]byte{1})
		}
	}
	rep, err := Reclaim(context.Background(), Target{PID: pid, FDs: fds, Methods: methods, hook: hook,
		pauseTimeout: time.Duration(pauseMS) * time.Millisecond}, nil)
	out := releaserOut{Report: rep}
	if err != nil {
		out.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}
