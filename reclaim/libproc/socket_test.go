package libproc

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"unsafe"
)

// socketFixture builds a socket_fdinfo as xnu fills it for a TCP socket
// (fill_socketinfo in bsd/kern/socket_info.c): family, kind, the local port
// in network order in an int, insi_vflag and the address in its union arm.
func socketFixture(family int32, vflag byte, addr netip.Addr, port uint16, state int32) []byte {
	b := make([]byte, sizeSocketFDInfo)
	le.PutUint32(b[offSoiFamily:], uint32(family))
	le.PutUint32(b[offSoiKind:], sockinfoTCP)
	binary.BigEndian.PutUint16(b[offInsiLport:], port)
	b[offInsiVflag] = vflag
	if addr.Is4() {
		a := addr.As4()
		copy(b[offInsiLaddr+offIn4In6Addr4:], a[:])
	} else {
		a := addr.As16()
		copy(b[offInsiLaddr:], a[:])
	}
	le.PutUint32(b[offTcpsiState:], uint32(state))
	// Bytes around the fields read stay non-zero, so that an offset one
	// field off reads garbage rather than a lucky zero.
	b[offSoiKind-1], b[offTcpsiState+4], b[offInsiLport-1] = 0xaa, 0xbb, 0xcc
	return b
}

// TestDecodeSocketFDInfoPeer: an accepted connection carries its foreign
// end, which the inspector route matches against its own local address.
func TestDecodeSocketFDInfoPeer(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	b := socketFixture(afInet, iniIPv4, lo, 9229, tcpStateEstab)
	binary.BigEndian.PutUint16(b[offInsiFport:], 54321)
	a := lo.As4()
	copy(b[offInsiFaddr+offIn4In6Addr4:], a[:])
	b[offInsiFaddr+offIn4In6Addr4-1] = 0xdd // padding of the v4 arm is ignored
	s, ok := DecodeSocketFDInfo(b)
	if !ok || !s.Established || s.Listening || s.Peer.String() != "127.0.0.1:54321" || s.Port != 9229 {
		t.Fatalf("%+v %v", s, ok)
	}
}

func TestDecodeSocketFDInfo(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	for _, c := range []struct {
		name    string
		b       []byte
		addr    string
		port    int
		listen  bool
		listens bool // takes connections to 127.0.0.1:9229
	}{
		{"inspector on 127.0.0.1", socketFixture(afInet, iniIPv4, lo, 9229, tcpStateListen), "127.0.0.1", 9229, true, true},
		{"wildcard v4", socketFixture(afInet, iniIPv4, netip.IPv4Unspecified(), 9229, tcpStateListen), "0.0.0.0", 9229, true, true},
		{"dual stack ::", socketFixture(afInet6, iniIPv4|iniIPv6, netip.IPv6Unspecified(), 9229, tcpStateListen), "::", 9229, true, true},
		// An AF_INET6 socket bound to ::ffff:127.0.0.1 carries the v4 arm.
		{"v4-mapped", socketFixture(afInet6, iniIPv4, lo, 9229, tcpStateListen), "127.0.0.1", 9229, true, true},
		{"::1 only", socketFixture(afInet6, iniIPv6, netip.IPv6Loopback(), 9229, tcpStateListen), "::1", 9229, true, false},
		{"connected, not listening", socketFixture(afInet, iniIPv4, lo, 9229, 4), "127.0.0.1", 9229, false, false},
		{"another port", socketFixture(afInet, iniIPv4, lo, 9230, tcpStateListen), "127.0.0.1", 9230, true, false},
	} {
		s, ok := DecodeSocketFDInfo(c.b)
		if !ok || s.Addr.String() != c.addr || s.Port != c.port || s.Listening != c.listen || s.ListensOn(9229) != c.listens {
			t.Errorf("%s: %+v %v (listens on 9229: %v)", c.name, s, ok, s.ListensOn(9229))
		}
	}
	udp := socketFixture(afInet, iniIPv4, lo, 9229, tcpStateListen)
	le.PutUint32(udp[offSoiKind:], 1) // SOCKINFO_IN: UDP or raw
	if _, ok := DecodeSocketFDInfo(udp); ok {
		t.Error("a non-TCP socket decoded as TCP")
	}
	if _, ok := DecodeSocketFDInfo(make([]byte, minSocketTCPAnswer-1)); ok {
		t.Error("a short answer decoded")
	}
}

func FuzzDecodeSocketFDInfo(f *testing.F) {
	f.Add(socketFixture(afInet, iniIPv4, netip.MustParseAddr("127.0.0.1"), 9229, tcpStateListen))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, ok := DecodeSocketFDInfo(b); ok && (s.Port < 0 || s.Port > 65535) {
			t.Fatalf("port %d", s.Port)
		}
	})
}

// The C structs of bsd/sys/proc_info.h transcribed as Go structs: Go lays
// out fixed-size fields with the same natural alignment as the LP64 C ABI
// of arm64 and x86_64 macOS, so unsafe.Offsetof derives every offset the
// decoder uses independently of the hand-computed constants.
type (
	cSockbufInfo struct {
		cc, hiwat, mbcnt, mbmax, lowat uint32
		flags, timeo                   int16
	}
	cInSockinfo struct {
		fport, lport int32
		gencnt       uint64
		flags, flow  uint32
		vflag, ttl   uint8
		rfu          uint32
		faddr, laddr [4]uint32 // in4in6_addr / in6_addr: 16 bytes, 4-aligned
		v4           struct{ tos uint8 }
		v6           struct {
			hlim    uint8
			cksum   int32
			ifindex uint16
			hops    int16
		}
	}
	cTCPSockinfo struct {
		ini         cInSockinfo
		state       int32
		timer       [4]int32
		mss         int32
		flags, rfu1 uint32
		tp          uint64
	}
	cUnSockinfo struct {
		connSo, connPCB uint64
		addr, caddr     [255]byte // SOCK_MAXADDRLEN
	}
	cSocketInfo struct {
		stat                                          [17]uint64 // vinfo_stat: 136 bytes, 8-aligned
		so, pcb                                       uint64
		typ, protocol, family                         int32
		options, linger, state, qlen, incqlen, qlimit int16
		timeo                                         int16
		err                                           uint16
		oobmark                                       uint32
		rcv, snd                                      cSockbufInfo
		kind                                          int32
		rfu                                           uint32
		proto                                         [66]uint64 // the union: its largest arm, un_sockinfo, padded
	}
	cSocketFDInfo struct {
		pfi [3]uint64 // proc_fileinfo: 24 bytes with an off_t
		psi cSocketInfo
	}
)

func TestSocketLayoutMatchesTheHeader(t *testing.T) {
	var s cSocketFDInfo
	var in cInSockinfo
	var tcp cTCPSockinfo
	psi := unsafe.Offsetof(s.psi)
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"sizeof(un_sockinfo), the union's largest arm", unsafe.Sizeof(cUnSockinfo{}), unsafe.Sizeof(s.psi.proto)},
		{"sizeof(socket_fdinfo)", unsafe.Sizeof(s), sizeSocketFDInfo},
		{"soi_family", psi + unsafe.Offsetof(s.psi.family), offSoiFamily},
		{"soi_kind", psi + unsafe.Offsetof(s.psi.kind), offSoiKind},
		{"soi_proto", psi + unsafe.Offsetof(s.psi.proto), offSoiProto},
		{"insi_fport", offSoiProto + unsafe.Offsetof(in.fport), offInsiFport},
		{"insi_lport", offSoiProto + unsafe.Offsetof(in.lport), offInsiLport},
		{"insi_faddr", offSoiProto + unsafe.Offsetof(in.faddr), offInsiFaddr},
		{"insi_vflag", offSoiProto + unsafe.Offsetof(in.vflag), offInsiVflag},
		{"insi_laddr", offSoiProto + unsafe.Offsetof(in.laddr), offInsiLaddr},
		{"tcpsi_state", offSoiProto + unsafe.Offsetof(tcp.state), offTcpsiState},
	} {
		if c.got != c.want {
			t.Errorf("%s: header says %d, the decoder uses %d", c.name, c.got, c.want)
		}
	}
	if unsafe.Sizeof(tcp) > unsafe.Sizeof(s.psi.proto) {
		t.Errorf("tcp_sockinfo (%d) does not fit the union (%d)", unsafe.Sizeof(tcp), unsafe.Sizeof(s.psi.proto))
	}
}
