// Package sessions tells who is logged in, from the login records (utmp,
// utmpx) and systemd-logind's session files, for the inspector route's
// rule: while another user is on the machine, an open inspector would let
// them run code inside the holder.
package sessions

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os/user"
	"sort"
	"strconv"
	"strings"
)

// User is someone logged in.
type User struct {
	Name string
	// UID is -1 when the name does not resolve.
	UID int
	// PID is the login's process (the session leader), 0 when unknown.
	PID int
	// Where says which record names them ("utmp", "logind").
	Where string
}

// utmpLayout is where the fields of one utmp or utmpx record are.
type utmpLayout struct {
	size           int
	typ, pid, user int // offsets: short ut_type, pid_t ut_pid, char ut_user[]
	userLen        int
}

// userProcess is USER_PROCESS, the record of a live login, in both glibc's
// utmp.h and macOS's utmpx.h.
const userProcess = 7

var (
	// glibcUtmp is struct utmp on 64-bit glibc (x86_64, arm64): short
	// ut_type @0, pid_t ut_pid @4, char ut_line[32] @8, char ut_id[4] @40,
	// char ut_user[32] @44, char ut_host[256] @76, struct exit_status @332,
	// int32 ut_session @336, struct { int32 sec, usec } ut_tv @340,
	// int32 ut_addr_v6[4] @348, char reserved[20] @364: 384 bytes.
	glibcUtmp = utmpLayout{size: 384, typ: 0, pid: 4, user: 44, userLen: 32}
	// darwinUtmpx is struct utmpx on macOS: char ut_user[256] @0,
	// char ut_id[4] @256, char ut_line[32] @260, pid_t ut_pid @292,
	// short ut_type @296, struct timeval ut_tv @304 (8-aligned, 16),
	// char ut_host[256] @320, uint32 ut_pad[16] @576: 640 bytes.
	darwinUtmpx = utmpLayout{size: 640, typ: 296, pid: 292, user: 0, userLen: 256}
)

// parseUtmp returns the USER_PROCESS records of a utmp file's bytes.
// A partial record at the end is ignored, as glibc's reader does.
func parseUtmp(data []byte, l utmpLayout) []User {
	le := binary.LittleEndian
	var out []User
	for off := 0; off+l.size <= len(data); off += l.size {
		r := data[off : off+l.size]
		if int16(le.Uint16(r[l.typ:])) != userProcess {
			continue
		}
		name := r[l.user : l.user+l.userLen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if len(name) == 0 {
			continue
		}
		out = append(out, User{Name: string(name), UID: -1, PID: int(int32(le.Uint32(r[l.pid:]))), Where: "utmp"})
	}
	return out
}

// parseLogindSession reads one /run/systemd/sessions/ID file. ok is false
// for a session that is closing (its user logged out; processes linger)
// or a file that names no user.
func parseLogindSession(text string) (u User, ok bool) {
	u = User{UID: -1, Where: "logind"}
	state := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, found := strings.Cut(sc.Text(), "=")
		if !found {
			continue
		}
		switch k {
		case "UID":
			if n, err := strconv.Atoi(v); err == nil {
				u.UID = n
			}
		case "USER":
			u.Name = v
		case "LEADER":
			u.PID, _ = strconv.Atoi(v)
		case "STATE":
			state = v
		}
	}
	return u, u.UID >= 0 && state != "closing"
}

// resolve fills in uids from names (utmp records only have names).
func resolve(us []User) {
	for i := range us {
		if us[i].UID >= 0 {
			continue
		}
		if pw, err := user.Lookup(us[i].Name); err == nil {
			us[i].UID, _ = strconv.Atoi(pw.Uid)
		}
	}
}

// Others names the users, other than uid and root, among those logged in,
// for a sentence: "bob (uid 1001), carol (uid 1002)". A name that does not
// resolve to a uid counts as another user: doubt refuses the route.
func Others(logged []User, uid int) string {
	seen := map[string]bool{}
	var names []string
	for _, u := range logged {
		if u.UID == uid || u.UID == 0 {
			continue
		}
		s := fmt.Sprintf("%s (uid %d)", u.Name, u.UID)
		if u.UID < 0 {
			s = u.Name + " (unknown uid)"
		}
		if !seen[s] {
			seen[s] = true
			names = append(names, s)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}
