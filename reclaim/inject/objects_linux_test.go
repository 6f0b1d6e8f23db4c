//go:build linux

package inject

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestReplacementObjects checks, on the kernel's own objects, that each
// replacement behaves as its method promises, and measures how much a
// quiet socket accepts before it pushes back. /dev/null is the one epoll
// refuses (EPERM), which is why a watched fd never gets it.
func TestReplacementObjects(t *testing.T) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	add := func(fd int) error {
		return unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT})
	}
	pollRDHUP := func(fd int) int16 {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT | unix.POLLRDHUP}}
		unix.Poll(p, 0)
		return p[0].Revents
	}
	poll := func(fd int) int16 {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT}}
		unix.Poll(p, 0)
		return p[0].Revents
	}

	null, err := os.OpenFile("/dev/null", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if err := add(int(null.Fd())); !errors.Is(err, unix.EPERM) {
		t.Errorf("epoll ADD of /dev/null: %v, want EPERM", err)
	}

	// hangup: a stream socket shut down for reading, its peer open.
	h, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(h[0])
	defer unix.Close(h[1])
	if err := unix.Shutdown(h[0], unix.SHUT_RD); err != nil {
		t.Fatal(err)
	}
	if err := add(h[0]); err != nil {
		t.Errorf("epoll ADD of a hung-up socket: %v", err)
	}
	if rev := pollRDHUP(h[0]); rev&(unix.POLLIN|unix.POLLRDHUP) != unix.POLLIN|unix.POLLRDHUP || rev&(unix.POLLHUP|unix.POLLERR) != 0 {
		t.Errorf("hung-up socket polls %#x, want POLLIN|POLLRDHUP without POLLHUP", rev)
	}
	if n, err := unix.Read(h[0], make([]byte, 8)); n != 0 || err != nil {
		t.Errorf("hung-up socket read %d %v, want EOF", n, err)
	}
	if n, err := unix.Write(h[0], []byte("x")); n != 1 || err != nil {
		t.Errorf("write to a hung-up socket: %d %v, want it accepted (a hung-up PTY master accepts writes)", n, err)
	}

	// What hangup once was: a pipe's read end without a writer. It polls
	// POLLHUP like a hung-up master, but fails writes with EBADF, which
	// node-pty re-throws as an uncaught error (reclaim/runtimes measured it).
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	unix.Close(p[1])
	defer unix.Close(p[0])
	if _, err := unix.Write(p[0], []byte("x")); !errors.Is(err, unix.EBADF) {
		t.Errorf("write to a hung-up pipe: %v, want EBADF", err)
	}

	// quiet: a stream socket whose peer stays open and silent.
	s, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s[0])
	defer unix.Close(s[1])
	if err := add(s[0]); err != nil {
		t.Errorf("epoll ADD of a quiet socket: %v", err)
	}
	if rev := poll(s[0]); rev != unix.POLLOUT {
		t.Errorf("quiet socket polls %#x, want POLLOUT only", rev)
	}
	if _, err := unix.Read(s[0], make([]byte, 8)); !errors.Is(err, unix.EAGAIN) {
		t.Errorf("quiet socket read: %v, want EAGAIN", err)
	}
	accepted, chunk := 0, make([]byte, 4096)
	for accepted < 64<<20 {
		n, err := unix.Write(s[0], chunk)
		if err != nil {
			if !errors.Is(err, unix.EAGAIN) {
				t.Errorf("quiet socket write: %v", err)
			}
			break
		}
		accepted += n
	}
	if accepted == 0 {
		t.Error("a quiet socket accepted no write")
	}
	t.Logf("MEASURE quiet: a non-blocking unix stream socket accepts %d bytes of writes before EAGAIN (a blocking one then blocks, like a terminal nobody reads)", accepted)
}
