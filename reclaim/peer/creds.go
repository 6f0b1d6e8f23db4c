// Package peer says who is at the other end of the daemon's socket and
// whether that user could act on a process herself: the self-service rule,
// the part of the platform boundary the daemon needs.
package peer

import (
	"bytes"
	"errors"
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

// creds are the credentials of one thread, from /proc/PID/task/TID/status.
type creds struct {
	uids, gids     [4]int // real, effective, saved, fs
	capPrm, capEff uint64
}

var errStatusFields = errors.New("status lacks Uid, Gid, CapPrm or CapEff")

// parseCreds reads the Uid, Gid, CapPrm and CapEff lines of a status file.
func parseCreds(b []byte) (creds, error) {
	var c creds
	seen := 0
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var err error
		switch string(key) {
		case "Uid":
			c.uids, err = parseIDs(val)
		case "Gid":
			c.gids, err = parseIDs(val)
		case "CapPrm":
			c.capPrm, err = strconv.ParseUint(string(bytes.TrimSpace(val)), 16, 64)
		case "CapEff":
			c.capEff, err = strconv.ParseUint(string(bytes.TrimSpace(val)), 16, 64)
		default:
			continue
		}
		if err != nil {
			return creds{}, errors.New("status line " + string(key) + ": " + err.Error())
		}
		seen++
	}
	if seen != 4 {
		return creds{}, errStatusFields
	}
	return c, nil
}

// parseIDs reads the four ids of a Uid or Gid line.
func parseIDs(val []byte) ([4]int, error) {
	var ids [4]int
	f := bytes.Fields(val)
	if len(f) != 4 {
		return ids, errors.New("want 4 ids")
	}
	for i := range f {
		n, err := strconv.ParseUint(string(f[i]), 10, 32)
		if err != nil {
			return ids, err
		}
		ids[i] = int(n)
	}
	return ids, nil
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
