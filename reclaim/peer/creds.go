// Package peer says who is at the other end of the daemon's socket and
// whether that user could act on a process herself: the self-service rule,
// the part of the platform boundary the daemon needs.
package peer

import (
	"bytes"
	"strconv"
)

// Caller is who sent a self-service request, from the socket's peer
// credentials, which the kernel recorded at connect time.
type Caller struct {
	UID, GID int
	PID      int
	// UserNS is the peer's /proc/PID/ns/user link ("user:[4026531837]"),
	// "" where the system has none.
	UserNS string
	// Root is true for uid 0 in the daemon's own user namespace: only
	// then may a request act on every process.
	Root bool
}

// nsRoot returns the id outside a user namespace that its id 0 maps to,
// from a uid_map or gid_map ("inside outside count" lines); an unmapped 0
// is the kernel's global root.
func nsRoot(idMap []byte) int {
	for len(idMap) > 0 {
		var line []byte
		line, idMap, _ = bytes.Cut(idMap, []byte{'\n'})
		f := bytes.Fields(line)
		if len(f) != 3 {
			continue
		}
		in, err1 := strconv.ParseUint(string(f[0]), 10, 32)
		out, err2 := strconv.ParseUint(string(f[1]), 10, 32)
		n, err3 := strconv.ParseUint(string(f[2]), 10, 32)
		if err1 == nil && err2 == nil && err3 == nil && in == 0 && n > 0 {
			return int(out)
		}
	}
	return 0
}
