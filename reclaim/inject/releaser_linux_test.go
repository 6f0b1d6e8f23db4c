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
)

// releaserEnv makes the test binary a releaser: "PID FD,FD,... POINT".
// At POINT it stops itself with SIGSTOP (the test then kills it); POINT
// "@frozen" instead writes a byte to fd 3 once the target is frozen, and
// "-" never pauses. The report goes to stdout as JSON.
const releaserEnv = "INJECT_TEST_RELEASER"

type releaserOut struct {
	Report Report
	Err    string
}

func runReleaser() int {
	f := strings.Fields(os.Getenv(releaserEnv))
	if len(f) != 3 {
		fmt.Fprintln(os.Stderr, "bad", releaserEnv)
		return 2
	}
	pid, _ := strconv.Atoi(f[0])
	var fds []int
	for _, s := range strings.Split(f[1], ",") {
		fd, _ := strconv.Atoi(s)
		fds = append(fds, fd)
	}
	point := f[2]
	hook := func(p string) {
		switch {
		case p == point:
			syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		case point == "@frozen" && p == "frozen":
			os.NewFile(3, "signal").Write([]byte{1})
		}
	}
	rep, err := Reclaim(context.Background(), Target{PID: pid, FDs: fds, hook: hook}, nil)
	out := releaserOut{Report: rep}
	if err != nil {
		out.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(out)
	return 0
}
