// Command shim leaks PTY masters the way containerd's runc shim did
// (containerd #11160): each container's console master stays registered in
// the shim's epoller (EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET, as
// containerd/console's Epoller does) after the container is gone. It
// prints "ready <first fd> <last fd>", then echoes stdin lines until EOF
// while a goroutine keeps waiting on the epoll set, the way the shim's
// event loop does.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	n, _ := strconv.Atoi(os.Args[1])
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		fmt.Fprintln(os.Stderr, "epoll:", err)
		os.Exit(1)
	}
	first, last := -1, -1
	for i := 0; i < n; i++ {
		m, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ptmx:", err)
			os.Exit(1)
		}
		var unlock int32
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(m), unix.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
			fmt.Fprintln(os.Stderr, "unlockpt:", e)
			os.Exit(1)
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(m)}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, m, &ev); err != nil {
			fmt.Fprintln(os.Stderr, "epoll_ctl:", err)
			os.Exit(1)
		}
		if first < 0 {
			first = m
		}
		last = m
	}
	go func() {
		events := make([]unix.EpollEvent, 64)
		for {
			if _, err := unix.EpollWait(ep, events, -1); err != nil && err != unix.EINTR {
				fmt.Fprintln(os.Stderr, "epoll_wait:", err)
				os.Exit(1)
			}
		}
	}()
	fmt.Printf("ready %d %d\n", first, last)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(in.Text())
	}
}
