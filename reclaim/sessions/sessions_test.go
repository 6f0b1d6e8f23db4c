package sessions

import (
	"encoding/binary"
	"testing"
)

// record builds one utmp or utmpx record.
func record(l utmpLayout, typ int16, pid int32, name string) []byte {
	r := make([]byte, l.size)
	binary.LittleEndian.PutUint16(r[l.typ:], uint16(typ))
	binary.LittleEndian.PutUint32(r[l.pid:], uint32(pid))
	copy(r[l.user:l.user+l.userLen], name)
	return r
}

func TestParseUtmp(t *testing.T) {
	for name, l := range map[string]utmpLayout{"glibc": glibcUtmp, "darwin": darwinUtmpx} {
		var data []byte
		data = append(data, record(l, 2, 0, "reboot")...)            // BOOT_TIME
		data = append(data, record(l, userProcess, 812, "alice")...) // a login
		data = append(data, record(l, 8, 900, "bob")...)             // DEAD_PROCESS: logged out
		data = append(data, record(l, userProcess, 1204, "carol")...)
		data = append(data, record(l, userProcess, 5, "")...) // no name
		data = append(data, make([]byte, l.size/2)...)        // a torn last record
		got := parseUtmp(data, l)
		if len(got) != 2 || got[0].Name != "alice" || got[0].PID != 812 || got[1].Name != "carol" || got[1].PID != 1204 {
			t.Errorf("%s: %+v", name, got)
		}
	}
	// A name that fills the field has no NUL.
	long := "abcdefghijklmnopqrstuvwxyz012345"
	got := parseUtmp(record(glibcUtmp, userProcess, 1, long), glibcUtmp)
	if len(got) != 1 || got[0].Name != long {
		t.Errorf("full-width name: %+v", got)
	}
}

func TestParseLogindSession(t *testing.T) {
	u, ok := parseLogindSession("# This is private data. Do not parse.\nUID=1001\nUSER=bob\nACTIVE=1\nSTATE=active\nREMOTE=1\nTYPE=tty\nCLASS=user\nLEADER=4242\n")
	if !ok || u.UID != 1001 || u.Name != "bob" || u.PID != 4242 {
		t.Errorf("active session: %+v %v", u, ok)
	}
	if _, ok := parseLogindSession("UID=1001\nUSER=bob\nSTATE=closing\n"); ok {
		t.Error("a closing session counts")
	}
	if _, ok := parseLogindSession("USER=bob\nSTATE=online\n"); ok {
		t.Error("a session without a uid counts")
	}
}

func TestOthers(t *testing.T) {
	logged := []User{
		{Name: "alice", UID: 1000}, {Name: "root", UID: 0}, {Name: "bob", UID: 1001},
		{Name: "bob", UID: 1001}, {Name: "ghost", UID: -1},
	}
	if got := Others(logged, 1000); got != "bob (uid 1001), ghost (unknown uid)" {
		t.Errorf("for alice: %q", got)
	}
	if got := Others([]User{{Name: "alice", UID: 1000}, {Name: "root", UID: 0}}, 1000); got != "" {
		t.Errorf("only the holder's user and root: %q", got)
	}
}
