package policy

import "golang.org/x/sys/unix"

// openDir opens one directory of the policy's path relative to dirfd with
// O_PATH: it neither follows a symlink (O_NOFOLLOW, and O_DIRECTORY makes
// a symlink fail) nor reads anything.
func openDir(dirfd int, name string) (int, error) {
	return unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// probeFile stats the policy file through an O_PATH|O_NOFOLLOW fd: a
// symlink is seen as itself, and a FIFO or device is not opened, so none
// of their open side effects (waking a writer, a tape rewinding) happens.
func probeFile(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	err = unix.Fstat(fd, &st)
	return st, err
}
