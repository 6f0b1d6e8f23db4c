package daemon

import "runtime"

// DefaultSocket is where the daemon listens for self-service requests and
// where release looks for it.
func DefaultSocket() string {
	if runtime.GOOS == "darwin" {
		return "/var/run/ptyreclaim.sock"
	}
	return "/run/ptyreclaim/ptyreclaim.sock"
}

// DefaultLock is the lock file that keeps one daemon at a time.
func DefaultLock() string {
	if runtime.GOOS == "darwin" {
		return "/var/run/ptyreclaim.lock"
	}
	return "/run/ptyreclaim/daemon.lock"
}
