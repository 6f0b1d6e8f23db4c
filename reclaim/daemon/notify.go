package daemon

import (
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Notify sends a systemd notification ("READY=1", "WATCHDOG=1", ...) when
// the service manager asked for them through $NOTIFY_SOCKET; otherwise it
// does nothing. The protocol is one datagram on a Unix socket, so no
// library is needed.
func Notify(state string) error {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil
	}
	if strings.HasPrefix(addr, "@") {
		addr = "\x00" + addr[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.Write([]byte(state))
	return err
}

// WatchdogInterval returns how often to send WATCHDOG=1: half the period
// systemd set in $WATCHDOG_USEC, or 0 when no watchdog is asked for (or it
// is meant for another process).
func WatchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares a RELOADING=1's MONOTONIC_USEC with. Go's own monotonic clock
// has another origin, so it is read from the kernel.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}
