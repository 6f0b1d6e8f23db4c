//go:build darwin

package lldb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Run returns a Runner for the lldb at path ("" to find it). It runs lldb with a deadline that covers the attach and every call.
// Its environment is minimal: root must not pick up a user's settings.
func Run(path string, exprTimeout time.Duration) Runner {
	return func(ctx context.Context, args []string) (string, error) {
		bin := path
		if bin == "" {
			var err error
			if bin, err = Find(); err != nil {
				return "", err
			}
		}
		calls := strings.Count(strings.Join(args, "\x00"), "expression ")
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(calls)*exprTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "TERM=dumb", "HOME=/var/root"}
		// SIGTERM lets lldb detach before it exits; SIGKILL only after.
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 10 * time.Second
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			return string(out), fmt.Errorf("lldb timed out: %w", ctx.Err())
		}
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			return string(out), fmt.Errorf("lldb: %w", err)
		}
		// A non-zero exit is read from the output like any other failure.
		return string(out), nil
	}
}

// Find finds a real lldb. /usr/bin/lldb is deliberately not used: it is
// a shim that asks to install the developer tools when they are missing.
func Find() (string, error) {
	var candidates []string
	if out, err := exec.Command("/usr/bin/xcode-select", "-p").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); dir != "" {
			candidates = append(candidates, filepath.Join(dir, "usr/bin/lldb"))
		}
	}
	candidates = append(candidates, Fallbacks...)
	return Pick(candidates, func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
	})
}
