//go:build darwin

package act

import (
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/unix"
)

// sysctlbyname is libSystem's int sysctlbyname(const char *name, void
// *oldp, size_t *oldlenp, void *newp, size_t newlen). golang.org/x/sys/unix
// reads sysctls but cannot write them, and Apple only promises libSystem,
// so it is called through purego, as reclaim/libproc calls libproc.
var (
	sysctlOnce sync.Once
	sysctlFn   uintptr
	sysctlErr  error
)

func loadSysctl() (uintptr, error) {
	sysctlOnce.Do(func() {
		h, err := purego.Dlopen("/usr/lib/libSystem.B.dylib", purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			sysctlErr = fmt.Errorf("dlopen libSystem: %w", err)
			return
		}
		if sysctlFn, err = purego.Dlsym(h, "sysctlbyname"); err != nil {
			sysctlErr = fmt.Errorf("dlsym sysctlbyname: %w", err)
		}
	})
	return sysctlFn, sysctlErr
}

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
	fn, err := loadSysctl()
	if err != nil {
		return err
	}
	name, err := unix.BytePtrFromString("kern.tty.ptmx_max")
	if err != nil {
		return err
	}
	v := int32(to) // the sysctl is an int (CTLTYPE_INT, "I")
	r, _, e := purego.SyscallN(fn, uintptr(unsafe.Pointer(name)), 0, 0, uintptr(unsafe.Pointer(&v)), unsafe.Sizeof(v))
	runtime.KeepAlive(name)
	runtime.KeepAlive(&v)
	if int32(r) != 0 {
		return fmt.Errorf("sysctlbyname kern.tty.ptmx_max=%d: %w", to, syscall.Errno(uint32(e)))
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
