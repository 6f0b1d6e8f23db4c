// gostate: a Go target for the crash-safe tests: goroutines churning
// garbage (GC, async preemption signals) and checking floating-point work,
// a SIGUSR1 handler (signal.Notify), and the crash tests' stdin commands:
// OPEN k [mask], CLOSE, CHECK, anything else is echoed. Masters opened with
// os.OpenFile are in the runtime's epoll set (edge-triggered, a pointer as
// data): a release must move those registrations.
package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

var bad, usr1 atomic.Int64

func churn(seed float64) {
	var sink [][]byte
	for i := 0; ; i++ {
		// Each result is computed twice; a vector register clobbered in
		// between shows as a mismatch.
		a := math.Sqrt(seed+float64(i)) * 1.000001
		b := math.Sqrt(seed+float64(i)) * 1.000001
		if a != b {
			bad.Add(1)
			fmt.Println("BAD float")
		}
		sink = append(sink, make([]byte, 64))
		if len(sink) > 1000 {
			sink = nil
		}
	}
}

func main() {
	for i := 0; i < 3; i++ {
		go churn(float64(i) * 3.7)
	}
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		for range ch {
			usr1.Add(1)
		}
	}()
	var opened []*os.File
	fmt.Println("READY")
	sc := bufio.NewScanner(os.Stdin)
	reads := 0
	for sc.Scan() {
		reads++
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "OPEN "):
			// "OPEN k [mask]": the runtime's poller watches every
			// master anyway, so the mask is ignored.
			k, _ := strconv.Atoi(strings.Fields(line)[1])
			out := []string{"FDS"}
			for i := 0; i < k; i++ {
				m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
				if err != nil {
					fmt.Println("BAD open", err)
					continue
				}
				d, err := syscall.Dup(int(m.Fd()))
				if err != nil {
					fmt.Println("BAD dup", err)
					continue
				}
				opened = append(opened, m, os.NewFile(uintptr(d), "dup"))
				out = append(out, fmt.Sprint(m.Fd()), fmt.Sprint(d))
			}
			fmt.Println(strings.Join(out, " "))
		case line == "CLOSE":
			for _, f := range opened {
				f.Close()
			}
			opened = nil
			fmt.Println("CLOSED")
		case line == "CHECK":
			fmt.Println("OK", reads, usr1.Load(), bad.Load())
		default:
			fmt.Println("ECHO", line)
		}
	}
}
