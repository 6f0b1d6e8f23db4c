//go:build darwin

package libproc

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"
	"golang.org/x/sys/unix"
)

// libSystemPath is where Apple promises libproc: its functions live in
// libsystem_kernel, which libSystem re-exports. Loading through purego keeps
// CGO_ENABLED=0 builds working.
const libSystemPath = "/usr/lib/libSystem.B.dylib"

// lib holds the libSystem entry points. The handle is never closed: Go
// runtime threads may still be inside a call.
type lib struct {
	listPIDs      uintptr // int proc_listpids(uint32_t type, uint32_t typeinfo, void *buf, int size)
	pidInfo       uintptr // int proc_pidinfo(int pid, int flavor, uint64_t arg, void *buf, int size)
	pidFDInfo     uintptr // int proc_pidfdinfo(int pid, int fd, int flavor, void *buf, int size)
	pidPath       uintptr // int proc_pidpath(int pid, void *buf, uint32_t size)
	dynKqueueInfo uintptr // int proc_piddynkqueueinfo(int pid, int flavor, kqueue_id_t id, void *buf, int size); private, may be 0
	csops         uintptr // int csops(pid_t pid, unsigned int ops, void *addr, size_t size); may be 0
	sysctlByName  uintptr // int sysctlbyname(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
	errnoLoc      func() *int32
}

var (
	libOnce sync.Once
	libVal  *lib
	libErr  error
)

func loadLib() (*lib, error) {
	libOnce.Do(func() {
		libVal, libErr = openLib()
	})
	return libVal, libErr
}

func openLib() (*lib, error) {
	h, err := purego.Dlopen(libSystemPath, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("dlopen %s: %w", libSystemPath, err)
	}
	l := &lib{}
	required := []struct {
		name string
		fn   *uintptr
	}{
		{"proc_listpids", &l.listPIDs},
		{"proc_pidinfo", &l.pidInfo},
		{"proc_pidfdinfo", &l.pidFDInfo},
		{"proc_pidpath", &l.pidPath},
		{"sysctlbyname", &l.sysctlByName},
	}
	for _, r := range required {
		if *r.fn, err = purego.Dlsym(h, r.name); err != nil {
			return nil, fmt.Errorf("dlsym %s: %w", r.name, err)
		}
	}
	if _, err := purego.Dlsym(h, "__error"); err != nil {
		return nil, fmt.Errorf("dlsym __error: %w", err)
	}
	purego.RegisterLibFunc(&l.errnoLoc, h, "__error")
	// Optional: a missing private symbol only narrows what is checked.
	l.dynKqueueInfo, _ = purego.Dlsym(h, "proc_piddynkqueueinfo")
	l.csops, _ = purego.Dlsym(h, "csops")
	return l, nil
}

// withErrno runs f with errno cleared on a locked OS thread. libproc returns
// 0 both for an empty answer and for an error, and does not clear errno, so
// a stale errno would otherwise be read as this call's failure. purego reads
// errno right after the call, on the same thread.
func (l *lib) withErrno(f func() (uintptr, uintptr)) (int, syscall.Errno) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	*l.errnoLoc() = 0
	r1, e := f()
	// purego loads errno as a machine word: only the low 32 bits are the int.
	return int(int32(r1)), syscall.Errno(uint32(e))
}

func bufPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func (l *lib) procListPIDs(buf []byte) (int, syscall.Errno) {
	n, e := l.withErrno(func() (uintptr, uintptr) {
		r1, _, e := purego.SyscallN(l.listPIDs, procAllPIDs, 0, uintptr(bufPtr(buf)), uintptr(len(buf)))
		return r1, e
	})
	runtime.KeepAlive(buf)
	return n, e
}

func (l *lib) procPIDInfo(pid, flavor int, arg uint64, buf []byte) (int, syscall.Errno) {
	n, e := l.withErrno(func() (uintptr, uintptr) {
		r1, _, e := purego.SyscallN(l.pidInfo, uintptr(pid), uintptr(flavor), uintptr(arg), uintptr(bufPtr(buf)), uintptr(len(buf)))
		return r1, e
	})
	runtime.KeepAlive(buf)
	return n, e
}

func (l *lib) procPIDFDInfo(pid, fd, flavor int, buf []byte) (int, syscall.Errno) {
	n, e := l.withErrno(func() (uintptr, uintptr) {
		r1, _, e := purego.SyscallN(l.pidFDInfo, uintptr(pid), uintptr(fd), uintptr(flavor), uintptr(bufPtr(buf)), uintptr(len(buf)))
		return r1, e
	})
	runtime.KeepAlive(buf)
	return n, e
}

func (l *lib) procDynKqueueInfo(pid, flavor int, id uint64, buf []byte) (int, syscall.Errno) {
	n, e := l.withErrno(func() (uintptr, uintptr) {
		r1, _, e := purego.SyscallN(l.dynKqueueInfo, uintptr(pid), uintptr(flavor), uintptr(id), uintptr(bufPtr(buf)), uintptr(len(buf)))
		return r1, e
	})
	runtime.KeepAlive(buf)
	return n, e
}

// errOf turns a libproc 0/-1 answer into an error; errno 0 means "empty".
func errOf(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// listAllPIDs returns every pid. The size hint is padded because processes
// start between the two calls.
func (l *lib) listAllPIDs() ([]int, error) {
	for range 3 {
		hint, e := l.procListPIDs(nil)
		if hint <= 0 {
			return nil, fmt.Errorf("proc_listpids size: %w", errOrUnknown(e))
		}
		buf := make([]byte, hint+256*4)
		n, e := l.procListPIDs(buf)
		if n <= 0 {
			return nil, fmt.Errorf("proc_listpids: %w", errOrUnknown(e))
		}
		if n < len(buf) {
			return DecodePIDs(buf[:n]), nil
		}
	}
	return nil, errors.New("proc_listpids: process table kept growing")
}

func errOrUnknown(e syscall.Errno) error {
	if e == 0 {
		return errors.New("no answer")
	}
	return e
}

// bsdInfo reads PROC_PIDTBSDINFO.
func (l *lib) bsdInfo(pid int) (BSDInfo, error) {
	buf := make([]byte, sizeBSDInfo)
	n, e := l.procPIDInfo(pid, pidTBSDInfo, 0, buf)
	if n <= 0 {
		return BSDInfo{}, errOrUnknown(e)
	}
	return DecodeBSDInfo(buf[:n])
}

// taskInfo reads PROC_PIDTASKINFO.
func (l *lib) taskInfo(pid int) (TaskInfo, error) {
	buf := make([]byte, sizeTaskInfo)
	n, e := l.procPIDInfo(pid, pidTaskInfo, 0, buf)
	if n <= 0 {
		return TaskInfo{}, errOrUnknown(e)
	}
	return DecodeTaskInfo(buf[:n])
}

// path reads the executable path (proc_pidpath); "" when unknown.
func (l *lib) path(pid int) string {
	buf := make([]byte, pidPathInfoMaxSize)
	n, _ := l.withErrno(func() (uintptr, uintptr) {
		r1, _, e := purego.SyscallN(l.pidPath, uintptr(pid), uintptr(bufPtr(buf)), uintptr(len(buf)))
		return r1, e
	})
	runtime.KeepAlive(buf)
	if n <= 0 || n > len(buf) {
		return ""
	}
	return cString(buf[:n])
}

// listFDs reads PROC_PIDLISTFDS. A NULL buffer returns the size of the fd
// table in bytes; fds opened in between are missed, which a later snapshot
// sees.
func (l *lib) listFDs(pid int) ([]FDInfo, error) {
	hint, e := l.procPIDInfo(pid, pidListFDs, 0, nil)
	if hint <= 0 {
		return nil, errOf(e)
	}
	buf := make([]byte, hint+32*sizeFDInfo)
	n, e := l.procPIDInfo(pid, pidListFDs, 0, buf)
	if n <= 0 {
		return nil, errOf(e)
	}
	return DecodeFDInfos(buf[:n]), nil
}

// vnodePath reads PROC_PIDFDVNODEPATHINFO.
func (l *lib) vnodePath(pid, fd int) (VnodeFD, error) {
	buf := make([]byte, sizeVnodeFDInfoWithPath)
	n, e := l.procPIDFDInfo(pid, fd, fdVnodePathInfo, buf)
	if n <= 0 {
		return VnodeFD{}, errOrUnknown(e)
	}
	return DecodeVnodeFDInfoWithPath(buf[:n])
}

// pipeInfo reads PROC_PIDFDPIPEINFO.
func (l *lib) pipeInfo(pid, fd int) (PipeFD, error) {
	buf := make([]byte, sizePipeFDInfo)
	n, e := l.procPIDFDInfo(pid, fd, fdPipeInfo, buf)
	if n <= 0 {
		return PipeFD{}, errOrUnknown(e)
	}
	return DecodePipeFDInfo(buf[:n])
}

// knotesOf reads the knotes of one kqueue with a call that returns the
// total knote count, growing the buffer until they all fit (lskq does the
// same).
func knotesOf(call func(buf []byte) (int, syscall.Errno)) ([]Knote, error) {
	capacity := 64
	for range 4 {
		buf := make([]byte, capacity*sizeKeventExtinfo)
		n, e := call(buf)
		if n <= 0 {
			return nil, errOf(e)
		}
		if n <= capacity {
			return DecodeKeventExtinfo(buf[:n*sizeKeventExtinfo]), nil
		}
		capacity = n + 16
	}
	return nil, errors.New("kqueue kept growing")
}

// fdKnotes reads PROC_PIDFDKQUEUE_EXTINFO for a kqueue fd, or for the
// process's workqueue kqueue when fd is -1.
func (l *lib) fdKnotes(pid, fd int) ([]Knote, error) {
	return knotesOf(func(buf []byte) (int, syscall.Errno) {
		return l.procPIDFDInfo(pid, fd, fdKqueueExtinfo, buf)
	})
}

// dynKqueueIDs reads PROC_PIDLISTDYNKQUEUES: the workloop kqueues
// libdispatch creates, which have no fd. It returns a count, not bytes.
func (l *lib) dynKqueueIDs(pid int) ([]uint64, error) {
	capacity := 32
	for range 4 {
		buf := make([]byte, capacity*8)
		n, e := l.procPIDInfo(pid, pidListDynKqueues, 0, buf)
		if n <= 0 {
			return nil, errOf(e)
		}
		if n <= capacity {
			return DecodeThreadList(buf[:n*8]), nil // same layout: uint64 array
		}
		capacity = n + 16
	}
	return nil, errors.New("dynamic kqueues kept growing")
}

// dynKnotes reads PROC_PIDDYNKQUEUE_EXTINFO for one workloop kqueue.
func (l *lib) dynKnotes(pid int, id uint64) ([]Knote, error) {
	if l.dynKqueueInfo == 0 {
		return nil, errors.New("proc_piddynkqueueinfo not exported")
	}
	return knotesOf(func(buf []byte) (int, syscall.Errno) {
		return l.procDynKqueueInfo(pid, dynKqueueExtinfo, id, buf)
	})
}

// onlyThreadState returns pth_run_state of a process's only thread.
func (l *lib) onlyThreadState(pid int) (int32, error) {
	buf := make([]byte, 4*8)
	n, e := l.procPIDInfo(pid, pidListThreads, 0, buf)
	if n <= 0 {
		return 0, errOrUnknown(e)
	}
	threads := DecodeThreadList(buf[:n])
	if len(threads) != 1 {
		return 0, fmt.Errorf("%d threads", len(threads))
	}
	tbuf := make([]byte, sizeThreadInfo)
	n, e = l.procPIDInfo(pid, pidThreadInfo, threads[0], tbuf)
	if n <= 0 {
		return 0, errOrUnknown(e)
	}
	ti, err := DecodeThreadInfo(tbuf[:n])
	if err != nil {
		return 0, err
	}
	return ti.RunState, nil
}

// csStatus reads the code signing flags of pid: csops(pid, CS_OPS_STATUS).
// libSystem's csops is preferred; the raw syscall is the fallback.
func (l *lib) csStatus(pid int) (uint32, error) {
	var flags uint32
	if l != nil && l.csops != 0 {
		r, e := l.withErrno(func() (uintptr, uintptr) {
			r1, _, e := purego.SyscallN(l.csops, uintptr(pid), csOpsStatus, uintptr(unsafe.Pointer(&flags)), 4)
			return r1, e
		})
		if r != 0 {
			return 0, errOrUnknown(e)
		}
		return flags, nil
	}
	_, _, e := unix.Syscall6(unix.SYS_CSOPS, uintptr(pid), csOpsStatus, uintptr(unsafe.Pointer(&flags)), 4, 0, 0)
	if e != 0 {
		return 0, e
	}
	return flags, nil
}

// SetSysctlInt writes an int sysctl by name, as root. golang.org/x/sys/unix
// reads sysctls but cannot write them; this is the one libSystem loader of
// the binary, shared with the scanner.
func SetSysctlInt(name string, v int32) error {
	l, err := loadLib()
	if err != nil {
		return err
	}
	p, err := unix.BytePtrFromString(name)
	if err != nil {
		return err
	}
	r, _, e := purego.SyscallN(l.sysctlByName, uintptr(unsafe.Pointer(p)), 0, 0, uintptr(unsafe.Pointer(&v)), unsafe.Sizeof(v))
	runtime.KeepAlive(p)
	runtime.KeepAlive(&v)
	if int32(r) != 0 {
		return fmt.Errorf("sysctlbyname %s=%d: %w", name, v, syscall.Errno(uint32(e)))
	}
	return nil
}
