//go:build !linux

package policy

import "golang.org/x/sys/unix"

// openDir opens one directory of the policy's path relative to dirfd
// without following a symlink. macOS has no O_PATH; opening a directory
// read-only has no side effect.
func openDir(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// probeFile stats the policy file without opening it (no O_PATH here), so
// that a FIFO or device is never opened; Load compares the file it then
// opens with this one.
func probeFile(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}
