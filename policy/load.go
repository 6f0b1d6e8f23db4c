package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// maxFileSize bounds what Load reads; a real policy is a few kilobytes.
const maxFileSize = 1 << 20

// Load reads, checks and parses the policy file at path. Whoever can
// change the policy of a root helper controls what it does, so, like
// sshd's StrictModes, every directory from / down to the file must be owned
// by root and not writable by group or others, no component may be a
// symlink, and the file must be a regular file with the same rules. The
// walk opens each component from the one before without following links
// (see openPolicy), and the file is only opened for reading once it is
// known to be a regular file: opening a device or a FIFO has side effects.
// A missing file yields an error wrapping fs.ErrNotExist.
func Load(path string) (*Policy, error) {
	f, err := openPolicy(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPathError(err))}
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is larger than %d bytes; this is not a policy file", maxFileSize)}
	}
	return Parse(data, path)
}

// openPolicy walks path from / one component at a time, each opened
// relative to the previous one with O_NOFOLLOW (O_PATH on Linux, so that
// nothing is read or triggered), checks each directory, then the file,
// and only then opens the file for reading, from the same directory fd.
func openPolicy(path string) (*os.File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot resolve path: %v", err)}
	}
	dirs, name := splitPath(abs)
	if name == "" {
		return nil, &Error{File: path, Msg: "not a regular file (a directory); the policy must be a plain file"}
	}
	dirfd, err := openDir(unix.AT_FDCWD, "/")
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot open /: %v", err)}
	}
	if err := checkDirFD(path, "/", dirfd); err != nil {
		unix.Close(dirfd)
		return nil, err
	}
	walked := ""
	for _, d := range dirs {
		walked += "/" + d
		fd, err := openDir(dirfd, d)
		if err != nil {
			e := componentError(path, walked, dirfd, d, err)
			unix.Close(dirfd)
			return nil, e
		}
		unix.Close(dirfd)
		dirfd = fd
		if err := checkDirFD(path, walked, dirfd); err != nil {
			unix.Close(dirfd)
			return nil, err
		}
	}
	defer unix.Close(dirfd)

	st, err := probeFile(dirfd, name)
	if err != nil {
		cause := err
		if errors.Is(err, unix.ENOENT) {
			cause = fs.ErrNotExist // keeps errors.Is(err, fs.ErrNotExist) and the message
		}
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot open: %v", err), Err: cause}
	}
	if err := checkFile(path, st); err != nil {
		return nil, err
	}
	// Now a regular file: open it for reading from the checked directory,
	// still without following a link, and make sure it is the file checked.
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot open: %v", err), Err: err}
	}
	var again unix.Stat_t
	if err := unix.Fstat(fd, &again); err != nil || again.Dev != st.Dev || again.Ino != st.Ino {
		unix.Close(fd)
		return nil, &Error{File: path, Msg: "the file changed while it was being opened; try again"}
	}
	return os.NewFile(uintptr(fd), abs), nil
}

// splitPath returns the directories of a clean absolute path below / and
// its last element ("" for /).
func splitPath(abs string) ([]string, string) {
	clean := filepath.Clean(abs)
	if clean == "/" {
		return nil, ""
	}
	parts := strings.Split(strings.TrimPrefix(clean, "/"), "/")
	return parts[:len(parts)-1], parts[len(parts)-1]
}

// componentError explains why a directory of the path could not be
// opened: a symlink, not a directory, or missing.
func componentError(path, walked string, dirfd int, name string, err error) error {
	var st unix.Stat_t
	if unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return &Error{File: path, Msg: fmt.Sprintf("path component %s is a symlink; a policy path must not go through symlinks, whose targets others may control (name the real path)", shellQuote(walked))}
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return &Error{File: path, Msg: fmt.Sprintf("path component %s is not a directory", shellQuote(walked))}
		}
	}
	cause := err
	if errors.Is(err, unix.ENOENT) {
		cause = fs.ErrNotExist
	}
	return &Error{File: path, Msg: fmt.Sprintf("cannot open: %v", err), Err: cause}
}

// checkDirFD refuses a directory others could write to or own: they could
// put another file, or another directory, in the policy's place.
func checkDirFD(path, dir string, fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &Error{File: path, Msg: fmt.Sprintf("cannot stat directory %s: %v", shellQuote(dir), err)}
	}
	fix := fmt.Sprintf("fix: chown root:root %s && chmod 755 %s", shellQuote(dir), shellQuote(dir))
	if st.Mode&unix.S_ISVTX != 0 {
		// chmod 755 /tmp is not the answer: move the policy.
		fix = "fix: keep the policy in a directory only root can write, such as /etc/ptyreclaim"
	}
	if st.Uid != 0 {
		return &Error{File: path, Msg: fmt.Sprintf("directory %s is owned by uid %d, not root; its owner could replace the policy (%s)", shellQuote(dir), st.Uid, fix)}
	}
	if st.Mode&0o022 != 0 {
		return &Error{File: path, Msg: fmt.Sprintf("directory %s (mode %s) is writable by group or others; others could replace the policy (%s)", shellQuote(dir), modeString(uint32(st.Mode)), fix)}
	}
	return nil
}

// modeString prints the permission bits as chmod takes them: 0777, 1777.
func modeString(mode uint32) string {
	return fmt.Sprintf("%04o", mode&0o7777)
}

// LoadInstalled loads the policy at path, or returns Default when that
// file does not exist: the installed policy is optional, a broken one is
// an error.
func LoadInstalled(path string) (*Policy, error) {
	p, err := Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Default(), nil
	}
	return p, err
}

func checkFile(path string, st unix.Stat_t) error {
	fix := fmt.Sprintf("fix: chown root:root %s && chmod 644 %s", shellQuote(path), shellQuote(path))
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return &Error{File: path, Msg: fmt.Sprintf("not a regular file (%s); the policy must be a plain file", fileKind(uint32(st.Mode)))}
	}
	if st.Uid != 0 {
		return &Error{File: path, Msg: fmt.Sprintf("owned by uid %d, not root; refusing a policy others could have written (%s)", st.Uid, fix)}
	}
	if perm := st.Mode & 0o7777; perm&0o022 != 0 {
		return &Error{File: path, Msg: fmt.Sprintf("mode %04o is writable by group or others; refusing a policy others could change (%s)", perm, fix)}
	}
	return nil
}

func fileKind(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a named pipe"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	default:
		return "not a regular file"
	}
}

// unwrapPathError drops the *fs.PathError wrapper, whose text repeats the
// path our messages already name, keeping the cause (and errors.Is).
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// shellQuote quotes a path for a command a person will paste, which matters
// for "/Library/Application Support/...".
func shellQuote(s string) string {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '/' || c == '.' || c == '_' || c == '-') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}
