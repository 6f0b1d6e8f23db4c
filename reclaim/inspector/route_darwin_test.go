//go:build darwin

package inspector

import (
	"net"
	"net/netip"
	"os"
	"testing"
)

// Live on a Mac, as a user: the test process is the "target". Its own
// listener on 127.0.0.1 is seen as its own through PROC_PIDFDSOCKETINFO,
// and the server end of a connection to it is found by the client's
// address and port (the proof provenDial makes before it sends a byte).
func TestDarwinSeesItsOwnListenerAndAcceptedConnection(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if own, foreign := listenerDarwin(os.Getpid(), port); !own || foreign {
		t.Fatalf("listener: own %v, foreign %v", own, foreign)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, ok := <-accepted
	if !ok {
		t.Fatal("not accepted")
	}
	defer s.Close()
	tcp := c.LocalAddr().(*net.TCPAddr)
	local := netip.AddrPortFrom(tcp.AddrPort().Addr().Unmap(), tcp.AddrPort().Port())
	h := &darwinHost{t: Target{PID: os.Getpid()}}
	if held, _ := h.accepted(local, port); !held {
		t.Fatalf("the server end of %v -> %d is not seen among our sockets", local, port)
	}
	// Another client address is not ours.
	if held, _ := h.accepted(netip.AddrPortFrom(local.Addr(), local.Port()+1), port); held {
		t.Fatal("a connection we did not make was proven")
	}
}
