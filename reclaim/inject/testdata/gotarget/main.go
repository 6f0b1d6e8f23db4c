// A Go target: leaked masters, goroutines churning garbage (GC, async
// preemption signals), a ticker, and an echo loop on stdin.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

var keep []*os.File // referenced so finalizers never close the masters

var sink atomic.Value

func main() {
	var fds []string
	for i := 0; i < 20; i++ {
		if i%2 == 0 {
			f, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
			if err != nil {
				panic(err)
			}
			keep = append(keep, f)
			fds = append(fds, fmt.Sprint(f.Fd()))
			continue
		}
		fd, err := syscall.Open("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY|syscall.O_CLOEXEC, 0)
		if err != nil {
			panic(err)
		}
		fds = append(fds, fmt.Sprint(fd))
	}
	for i := 0; i < 4; i++ {
		go func() {
			for {
				b := make([]byte, 64<<10)
				b[0] = 1
				sink.Store(b)
			}
		}()
	}
	var ticks atomic.Int64
	go func() {
		for range time.Tick(time.Millisecond) {
			ticks.Add(1)
		}
	}()
	fmt.Println("READY " + strings.Join(fds, " "))
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		switch line {
		case "EXIT":
			fmt.Println("BYE")
			return
		case "COUNT":
			runtime.GC()
			fmt.Printf("COUNT %d 0\n", ticks.Load())
		default:
			fmt.Println("ECHO " + line)
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Println("EINTR " + err.Error())
	}
}
