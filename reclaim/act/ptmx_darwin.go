//go:build darwin

package act

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/libproc"
)

// RaisePTMXMax raises kern.tty.ptmx_max to `to`, as root. It never lowers
// the limit: when `to` is not above the current value it does nothing and
// returns nil. `to` must be within 1..999 (PTMXMaxCeiling). The value is
// read back afterwards. Pick `to` with NextPTMXMax.
//
// A running helper can do this when the pool is full; `sudo sysctl` then
// often cannot, because sudo needs a PTY.
func RaisePTMXMax(to int) error {
	current, err := unix.SysctlUint32("kern.tty.ptmx_max")
	if err != nil {
		return fmt.Errorf("read kern.tty.ptmx_max: %w", err)
	}
	write, err := checkPTMXRaise(int(current), to)
	if err != nil || !write {
		return err
	}
	// The sysctl is an int (CTLTYPE_INT, "I").
	if err := libproc.SetSysctlInt("kern.tty.ptmx_max", int32(to)); err != nil {
		return err
	}
	after, err := unix.SysctlUint32("kern.tty.ptmx_max")
	if err != nil {
		return fmt.Errorf("read back kern.tty.ptmx_max: %w", err)
	}
	if int(after) != to {
		return fmt.Errorf("kern.tty.ptmx_max is %d after writing %d", after, to)
	}
	return nil
}
