package libproc

import (
	"encoding/binary"
	"net/netip"
)

// PROC_PIDFDSOCKETINFO answers struct socket_fdinfo (bsd/sys/proc_info.h):
//
//	socket_fdinfo { proc_fileinfo pfi (24); socket_info psi @24 }
//	socket_info   { vinfo_stat soi_stat (136); u64 soi_so @136, soi_pcb @144;
//	                int soi_type @152, soi_protocol @156, soi_family @160;
//	                 7 shorts and a u_short @164..179; u32 soi_oobmark @180;
//	                sockbuf_info soi_rcv @184, soi_snd @208 (24 each: 5 u32, 2 shorts);
//	                int soi_kind @232; u32 rfu_1 @236; union soi_proto @240 (8-aligned) }
//	in_sockinfo   { int insi_fport @0, insi_lport @4; u64 insi_gencnt @8;
//	                u32 insi_flags @16, insi_flow @20; u8 insi_vflag @24, insi_ip_ttl @25;
//	                u32 rfu_1 @28; insi_faddr @32 (16), insi_laddr @48 (16);
//	                insi_v4 { u_char } @64; insi_v6 { u8; int; u_short; short } @68 (12) } = 80
//	tcp_sockinfo  { in_sockinfo tcpsi_ini @0; int tcpsi_state @80; ... }
//
// The union's largest arm is un_sockinfo (2 u64 + 2 x 255-byte addresses,
// 528 with padding), so socket_fdinfo is 24 + 240 + 528 = 792 bytes.
const (
	fdSocketInfo       = 3 // PROC_PIDFDSOCKETINFO
	sizeSocketFDInfo   = 792
	offSoiFamily       = 24 + 160
	offSoiKind         = 24 + 232
	offSoiProto        = 24 + 240
	offInsiFport       = offSoiProto + 0
	offInsiLport       = offSoiProto + 4
	offInsiFaddr       = offSoiProto + 32
	offInsiVflag       = offSoiProto + 24
	offInsiLaddr       = offSoiProto + 48
	offTcpsiState      = offSoiProto + 80
	sockinfoTCP        = 2   // SOCKINFO_TCP
	tcpStateListen     = 1   // TSI_S_LISTEN
	tcpStateEstab      = 4   // TSI_S_ESTABLISHED
	iniIPv4            = 0x1 // INI_IPV4
	iniIPv6            = 0x2 // INI_IPV6
	afInet, afInet6    = 2, 30
	sizeInsiLaddr      = 16
	offIn4In6Addr4     = 12 // in4in6_addr: three u32 of padding, then the address
	minSocketTCPAnswer = offTcpsiState + 4
)

// TCPSocket is what PROC_PIDFDSOCKETINFO says about a TCP socket.
type TCPSocket struct {
	Listening bool
	// Port is the local port, host order.
	Port int
	// Addr is the local address: 0.0.0.0 or :: for a wildcard bind.
	Addr netip.Addr
	// Established is true for a connected socket; then Peer is the
	// foreign end (the inspector route proves its own connection was
	// accepted by the target through it).
	Established bool
	Peer        netip.AddrPort
}

// DecodeSocketFDInfo decodes the TCP part of a socket_fdinfo. ok is false
// for a socket that is not TCP or an answer too short to say.
func DecodeSocketFDInfo(b []byte) (s TCPSocket, ok bool) {
	if len(b) < minSocketTCPAnswer || int32(le.Uint32(b[offSoiKind:])) != sockinfoTCP {
		return TCPSocket{}, false
	}
	s.Listening = int32(le.Uint32(b[offTcpsiState:])) == tcpStateListen
	// inp_lport is in network order, stored in an int: its first two
	// bytes are the port, big-endian.
	s.Port = int(binary.BigEndian.Uint16(b[offInsiLport:]))
	s.Established = int32(le.Uint32(b[offTcpsiState:])) == tcpStateEstab
	// insi_vflag says which arm of the address union the kernel filled:
	// an AF_INET6 socket bound to a v4-mapped address holds the v4 arm.
	vflag := b[offInsiVflag]
	family := int32(le.Uint32(b[offSoiFamily:]))
	var v6 bool
	switch {
	case vflag&iniIPv6 != 0, vflag == 0 && family == afInet6:
		v6 = true
	case vflag&iniIPv4 != 0, vflag == 0 && family == afInet:
	default:
		return TCPSocket{}, false
	}
	addr := func(off int) netip.Addr {
		a := b[off : off+sizeInsiLaddr]
		if v6 {
			return netip.AddrFrom16([16]byte(a))
		}
		return netip.AddrFrom4([4]byte(a[offIn4In6Addr4:]))
	}
	s.Addr = addr(offInsiLaddr)
	s.Peer = netip.AddrPortFrom(addr(offInsiFaddr), binary.BigEndian.Uint16(b[offInsiFport:]))
	return s, true
}

// ListensOn reports whether s is a listener that takes connections to
// 127.0.0.1:port: bound to it, or to a wildcard.
func (s TCPSocket) ListensOn(port int) bool {
	if !s.Listening || s.Port != port {
		return false
	}
	a := s.Addr.Unmap()
	return a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || a.IsUnspecified()
}
