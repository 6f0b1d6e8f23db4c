package inspector

import (
	"strings"
	"testing"
)

func TestParseListeners(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:240D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 561234 1 0000000000000000 100 0 0 10 0
   1: 00000000:240D 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 561240 1 0000000000000000 100 0 0 10 0
   2: 0100007F:240D 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 561299 1 0000000000000000 20 4 30 10 -1
`
	got := parseListeners([]byte(tcp))
	if len(got) != 2 || !got[0].loopback || got[0].port != 9229 || got[0].inode != 561234 || got[1].loopback || got[1].inode != 561240 {
		t.Fatalf("%+v", got)
	}
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:240D 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 7777 1 0000000000000000 100 0 0 10 0
`
	if got := parseListeners([]byte(tcp6)); len(got) != 1 || !got[0].loopback || got[0].port != 9229 {
		t.Fatalf("tcp6 %+v", got)
	}
}

func TestParseExecMappings(t *testing.T) {
	maps := `00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/node
00651000-00652000 r--p 00051000 08:02 173521      /usr/bin/node
7f1c00000000-7f1c00021000 rw-p 00000000 00:00 0
7f1c2a000000-7f1c2a200000 r-xp 00000000 00:2d 9001        /tmp/.mount_App/usr/lib/electron app
7ffd1e3f2000-7ffd1e3f4000 r-xp 00000000 00:00 0                          [vdso]
`
	got := parseExecMappings([]byte(maps))
	if len(got) != 2 || got[0] != (mapping{rng: "00400000-00452000", dev: "08:02", inode: "173521", path: "/usr/bin/node"}) || got[1].path != "/tmp/.mount_App/usr/lib/electron app" || got[1].dev != "00:2d" {
		t.Fatalf("%+v", got)
	}
}

func TestSigCgt(t *testing.T) {
	// node 20: SIGUSR1 (bit 9, signal 10) caught among others.
	m, err := sigCgt([]byte("Name:\tnode\nSigBlk:\t0000000000000000\nSigIgn:\t0000000001001000\nSigCgt:\t0000000188014602\n"))
	if err != nil || !CatchesSIGUSR1(m) {
		t.Fatalf("%x %v", m, err)
	}
	m, _ = sigCgt([]byte("SigCgt:\t0000000000000000\n"))
	if CatchesSIGUSR1(m) {
		t.Fatal("no handler read as one")
	}
	if _, err := sigCgt([]byte("Name:\tx\n")); err == nil {
		t.Fatal("missing SigCgt accepted")
	}
}

// TestParseConns reads the connections of /proc/net/tcp: the server end
// of a connection to the inspector (inode 0 while in the accept queue).
func TestParseConns(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:240D 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 561234 1 0000000000000000 100 0 0 10 0
   1: 0100007F:240D 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 561299 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:240D 0100007F:C351 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0000000000000000 20 4 30 10 -1
   3: 0A00020F:C350 0100007F:zz 01 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 20 4 30 10 -1
`
	got := parseConns([]byte(tcp))
	if len(got) != 3 {
		t.Fatalf("%+v", got)
	}
	if c := got[1]; c.local.String() != "127.0.0.1:9229" || c.remote.String() != "127.0.0.1:50000" || c.state != "01" || c.inode != 561299 {
		t.Errorf("%+v", c)
	}
	if c := got[2]; c.remote.Port() != 50001 || c.inode != 0 {
		t.Errorf("%+v", c)
	}
	if a, ok := parseHexAddrPort("0F02000A:0016"); !ok || a.String() != "10.0.2.15:22" {
		t.Errorf("%v %v", a, ok)
	}
}

func TestInspectorOption(t *testing.T) {
	for args, want := range map[string]string{
		"node app.js 3":                "",
		"node --inspect-port=0 app.js": "--inspect-port=0",
		"node --max-old-space-size=4096 --inspect=0.0.0.0:9229 app.js": "--inspect=0.0.0.0:9229",
		"node --disable-sigusr1 app.js":                                "--disable-sigusr1",
		"node app.js -- --inspect":                                     "",
		"electron --inspect-brk .":                                     "--inspect-brk",
	} {
		if got := inspectorOption(strings.Fields(args)); got != want {
			t.Errorf("%q: %q, want %q", args, got, want)
		}
	}
}
