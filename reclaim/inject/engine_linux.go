//go:build linux

package inject

// The crash-safe engine's architecture-neutral parts: what is looked up
// before the freeze, reading and writing target memory, proving that a
// stack has room for a restore frame, and waiting for one thread.

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// engineTimeout bounds the whole batch routine. It only ever runs
// openat/dup3/close and similar calls, none of which block.
const engineTimeout = 10 * time.Second

// selfReturnAfter is how long the routine waits for us after its last call
// before it returns through rt_sigreturn by itself: the longest a target
// whose tracer died keeps the injected thread in the routine. When we are
// alive we interrupt it within microseconds; if we are slower than this,
// the routine has already restored the thread and we notice.
const selfReturnAfter = 250 * time.Millisecond

// enginePrep is what the engine looks up before the freeze, so that the
// freeze only re-checks it.
type enginePrep struct {
	// syscallRet and sigreturn are gadget addresses in the target's code
	// (0: none found).
	syscallRet, sigreturn []byte
	sr, rt                uint64
	goRuntime             bool
	startStack            uint64
	reason                string // why the engine cannot run, if it cannot
}

// prepareEngine scans the target's executable mappings for the gadgets
// the bootstrap chain needs and notes facts about its stacks. It writes
// nothing.
func prepareEngine(pid int) *enginePrep {
	p := &enginePrep{}
	if hostABI.name != "amd64" {
		p.reason = "the crash-safe engine exists for amd64 only"
		return p
	}
	data, err := os.ReadFile(procPath(pid, "maps"))
	if err != nil {
		p.reason = fmt.Sprintf("cannot read the mappings: %v", err)
		return p
	}
	maps := parseMaps(data)
	p.goRuntime = isGoProcess(pid, maps)
	if st, err := os.ReadFile(procPath(pid, "stat")); err == nil {
		p.startStack = statStartStack(st)
	}
	mem, err := os.Open(procPath(pid, "mem"))
	if err != nil {
		p.reason = fmt.Sprintf("cannot read the memory: %v", err)
		return p
	}
	defer mem.Close()
	// The vDSO and the main executable and libc are never unmapped while
	// the process lives, so gadgets are taken from them first.
	var order []mapping
	for _, m := range maps {
		if len(m.perms) < 3 || m.perms[2] != 'x' || m.end <= m.start || m.name == "[vsyscall]" {
			continue
		}
		if m.name == "[vdso]" {
			order = append([]mapping{m}, order...)
		} else {
			order = append(order, m)
		}
	}
	const maxScan = 64 << 20
	scanned := 0
	for _, m := range order {
		if p.sr != 0 && p.rt != 0 {
			break
		}
		size := int(min(m.end-m.start, 16<<20))
		if scanned+size > maxScan {
			break
		}
		scanned += size
		code := make([]byte, size)
		n, _ := mem.ReadAt(code, int64(m.start))
		code = code[:n]
		if p.sr == 0 {
			if i := bytes.Index(code, gadgetSyscallRet); i >= 0 {
				p.sr, p.syscallRet = m.start+uint64(i), gadgetSyscallRet
			}
		}
		if p.rt == 0 {
			if i := bytes.Index(code, gadgetSigreturn); i >= 0 {
				p.rt, p.sigreturn = m.start+uint64(i), gadgetSigreturn
			} else if i := bytes.Index(code, gadgetSigreturn2); i >= 0 {
				p.rt, p.sigreturn = m.start+uint64(i), gadgetSigreturn2
			}
		}
	}
	switch {
	case p.sr == 0:
		p.reason = "no 'syscall; ret' sequence in the target's code"
	case p.rt == 0:
		p.reason = "no rt_sigreturn sequence in the target's code"
	}
	return p
}

// isGoProcess says whether the target runs the Go runtime, whose goroutine
// stacks live in heap arenas and must never get a frame below their sp.
func isGoProcess(pid int, maps []mapping) bool {
	f, err := elf.Open(procPath(pid, "exe"))
	if err == nil {
		defer f.Close()
		if f.Section(".go.buildinfo") != nil || f.Section(".gopclntab") != nil {
			return true
		}
	}
	// A Go shared library in a C program: its heap starts here.
	for _, m := range maps {
		if m.start == 0xc000000000 {
			return true
		}
	}
	return false
}

// statStartStack returns field 28 of /proc/PID/stat, the initial stack
// pointer of the main thread (0 if unreadable).
func statStartStack(data []byte) uint64 {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 26 {
		return 0
	}
	v, _ := strconv.ParseUint(f[25], 10, 64)
	return v
}

// goSystemStackReserve is how much of the main thread's OS stack, below
// its initial sp, the Go runtime uses as m0's g0 stack (rt0_go: 64 KiB);
// a margin is kept on top.
const goSystemStackReserve = 64<<10 + 16<<10

// frameSpot finds where a restore frame of need bytes may be written for
// a thread whose stack pointer is sp, without harming the program: the
// place the kernel itself would put a signal frame, below the 128-byte
// red zone, on a stack proven to be a real stack with room, never a Go
// goroutine stack. It returns the 64-byte aligned address, or a reason.
func frameSpot(maps []mapping, sp uint64, need int, leader, goRuntime bool, startStack uint64) (uint64, string) {
	idx := -1
	for i, m := range maps {
		if sp > m.start && sp <= m.end {
			idx = i
			break
		}
	}
	below := func(m mapping, limit uint64) (uint64, bool) {
		if limit > m.end || limit < m.start+uint64(need)+4096 {
			return 0, false
		}
		return (limit - uint64(need)) &^ 63, true
	}
	if idx >= 0 {
		m := maps[idx]
		switch {
		case m.name == "[stack]":
			if at, ok := below(m, sp-128); ok {
				return at, ""
			}
			return 0, "the main thread's stack has no room for a restore frame"
		case !goRuntime && m.name == "" && strings.HasPrefix(m.perms, "rw") && idx > 0 &&
			maps[idx-1].end == m.start && strings.HasPrefix(maps[idx-1].perms, "---"):
			// A thread stack as glibc and musl make them: anonymous,
			// with a guard page right below.
			if at, ok := below(m, sp-128); ok {
				return at, ""
			}
			return 0, "the thread's stack has no room for a restore frame"
		}
	}
	if goRuntime && leader && startStack != 0 {
		// The main thread of a Go program runs a goroutine on a heap
		// stack; its OS stack is only used (as m0's g0 stack) within 64
		// KiB of the initial sp, and not at all while it runs that
		// goroutine, so the rest below is free.
		for _, m := range maps {
			if m.name == "[stack]" && startStack > m.start && startStack <= m.end && startStack > goSystemStackReserve {
				if at, ok := below(m, startStack-goSystemStackReserve); ok {
					return at, ""
				}
			}
		}
		return 0, "the Go main thread's OS stack has no free room below its system stack"
	}
	if goRuntime {
		return 0, "the injecting thread is on a Go goroutine or system stack in the heap"
	}
	return 0, "the injecting thread's stack is not a proven stack mapping"
}

// readMem and writeMem move bytes with process_vm_readv/writev: one system
// call, where ptrace peeks and pokes cost one per word.
func readMem(pid int, addr uint64, buf []byte) error {
	if len(buf) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err != nil {
		return err
	}
	if n != len(buf) {
		return fmt.Errorf("short read of %d bytes at %#x", n, addr)
	}
	return nil
}

// writeMem writes several pieces in one call.
func writeMem(pid int, pieces ...memPiece) error {
	var local []unix.Iovec
	var remote []unix.RemoteIovec
	total := 0
	for _, p := range pieces {
		if len(p.data) == 0 {
			continue
		}
		iov := unix.Iovec{Base: &p.data[0]}
		iov.SetLen(len(p.data))
		local = append(local, iov)
		remote = append(remote, unix.RemoteIovec{Base: uintptr(p.addr), Len: len(p.data)})
		total += len(p.data)
	}
	if total == 0 {
		return nil
	}
	n, err := unix.ProcessVMWritev(pid, local, remote, 0)
	if err != nil {
		return err
	}
	if n != total {
		return fmt.Errorf("short write of %d of %d bytes", n, total)
	}
	return nil
}

type memPiece struct {
	addr uint64
	data []byte
}

// getRegSet reads one register set into buf and returns its length.
func getRegSet(tid int, nt int, buf []byte) (int, error) {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GETREGSET, uintptr(tid),
		uintptr(nt), uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(iov.Len), nil
}

// errFault is a fatal signal our own code caused in the target.
var errFault = errors.New("the injected routine faulted")

// waitEventStop waits for tid's next PTRACE_EVENT_STOP (after an
// interrupt), stepping over other stops: signal-delivery stops are held
// back for later (or, for a fault our routine caused, suppressed and
// reported), everything else is resumed.
func (t *tracer) waitEventStop(tid int, deadline time.Time) error {
	var nap time.Duration
	spinUntil := time.Now().Add(spinFor)
	for detours := 0; ; {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ECHILD):
			t.threads[tid].state = gone
			return errGone
		case err != nil:
			return err
		case wpid == 0:
			if time.Now().After(deadline) {
				return fmt.Errorf("thread %d of pid %d did not stop in time", tid, t.pid)
			}
			if time.Now().Before(spinUntil) {
				unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
				continue
			}
			if s := t.taskState(tid); s == "Z" || s == "X" || s == "gone" {
				t.threads[tid].state = gone
				return errGone
			}
			nap = min(max(2*nap, 10*time.Microsecond), time.Millisecond)
			time.Sleep(nap)
			continue
		}
		if ws.Exited() || ws.Signaled() {
			t.threads[tid].state = gone
			return errGone
		}
		if !ws.Stopped() {
			continue
		}
		if uint32(ws)>>16 == unix.PTRACE_EVENT_STOP {
			if s := ws.StopSignal(); s == unix.SIGTRAP {
				return nil
			}
			// A group-stop: not our interrupt; let it go on.
		} else if sig := ws.StopSignal(); uint32(ws)>>16 == 0 && sig != unix.SIGTRAP && sig != unix.SIGTRAP|0x80 {
			switch sig {
			case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGSYS:
				// Every signal is blocked, so this is forced by
				// something our routine did: stop here, suppressed.
				t.notes = append(t.notes, fmt.Sprintf("the injected routine caused %v in thread %d (suppressed)", sig, tid))
				return errFault
			default:
				t.resignal = append(t.resignal, pendingSignal{tid: tid, sig: sig})
			}
		}
		if detours++; detours > 64 {
			return fmt.Errorf("thread %d of pid %d keeps stopping unexpectedly", tid, t.pid)
		}
		if err := unix.PtraceInterrupt(tid); err != nil && !errors.Is(err, unix.ESRCH) {
			return err
		}
		if err := unix.PtraceCont(tid, 0); err != nil {
			if errors.Is(err, unix.ESRCH) {
				return errGone
			}
			return err
		}
	}
}

// pollRunning checks, without blocking, whether a running tid has stopped
// or died; a stop is reported as errStopped with its status.
func (t *tracer) pollRunning(tid int) (unix.WaitStatus, bool, error) {
	var ws unix.WaitStatus
	wpid, err := unix.Wait4(tid, &ws, unix.WNOHANG|unix.WALL, nil)
	switch {
	case errors.Is(err, unix.EINTR):
		return 0, false, nil
	case errors.Is(err, unix.ECHILD):
		t.threads[tid].state = gone
		return 0, false, errGone
	case err != nil:
		return 0, false, err
	case wpid == 0:
		return 0, false, nil
	}
	if ws.Exited() || ws.Signaled() {
		t.threads[tid].state = gone
		return ws, false, errGone
	}
	return ws, ws.Stopped(), nil
}
