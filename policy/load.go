package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// maxFileSize bounds what Load reads; a real policy is a few kilobytes.
const maxFileSize = 1 << 20

// Load reads, checks and parses the policy file at path. The file must be a
// regular file owned by root and not writable by group or others, and so
// must its directory: whoever can change the policy of a root helper
// controls what it does. A missing file yields an error wrapping
// fs.ErrNotExist.
func Load(path string) (*Policy, error) {
	// Check the opened file, not the path, so the file cannot be swapped
	// between the check and the read.
	// O_NONBLOCK so that a named pipe at path cannot hang the open.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		cause := unwrapPathError(err)
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot open: %v", cause), Err: cause}
	}
	defer f.Close()

	fi, err := f.Stat()
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot stat: %v", unwrapPathError(err))}
	}
	if err := checkFile(path, fi); err != nil {
		return nil, err
	}
	if err := checkDir(path); err != nil {
		return nil, err
	}

	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, &Error{File: path, Msg: fmt.Sprintf("cannot read: %v", unwrapPathError(err))}
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file is larger than %d bytes; this is not a policy file", maxFileSize)}
	}
	return Parse(data, path)
}

// LoadDefault loads the policy at DefaultPath, or returns Default when that
// file does not exist.
func LoadDefault() (*Policy, error) {
	return loadOrDefault(DefaultPath())
}

func loadOrDefault(path string) (*Policy, error) {
	p, err := Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Default(), nil
	}
	return p, err
}

func checkFile(path string, fi fs.FileInfo) error {
	fix := fmt.Sprintf("fix: chown root:root %s && chmod 644 %s", shellQuote(path), shellQuote(path))
	if !fi.Mode().IsRegular() {
		return &Error{File: path, Msg: fmt.Sprintf("not a regular file (%s); the policy must be a plain file", fileKind(fi.Mode()))}
	}
	if uid, ok := ownerUID(fi); !ok || uid != 0 {
		return &Error{File: path, Msg: fmt.Sprintf("owned by uid %d, not root; refusing a policy others could have written (%s)", uid, fix)}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &Error{File: path, Msg: fmt.Sprintf("mode %04o is writable by group or others; refusing a policy others could change (%s)", perm, fix)}
	}
	return nil
}

// checkDir refuses a policy whose directory others may write to: they could
// replace the file with a link to another root-owned file.
func checkDir(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return &Error{File: path, Msg: fmt.Sprintf("cannot resolve path: %v", unwrapPathError(err))}
	}
	dir := filepath.Dir(real)
	fi, err := os.Stat(dir)
	if err != nil {
		return &Error{File: path, Msg: fmt.Sprintf("cannot stat directory %s: %v", dir, unwrapPathError(err))}
	}
	fix := fmt.Sprintf("fix: chown root:root %s && chmod 755 %s", shellQuote(dir), shellQuote(dir))
	if uid, ok := ownerUID(fi); !ok || uid != 0 {
		return &Error{File: path, Msg: fmt.Sprintf("directory %s is owned by uid %d, not root; others could replace the policy (%s)", dir, uid, fix)}
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return &Error{File: path, Msg: fmt.Sprintf("directory %s (mode %04o) is writable by group or others; others could replace the policy (%s)", dir, perm, fix)}
	}
	return nil
}

func ownerUID(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return -1, false
	}
	return int(st.Uid), true
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symlink"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
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
