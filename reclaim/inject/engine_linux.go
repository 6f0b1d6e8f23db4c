//go:build linux

package inject

// The crash-safe engine, architecture-neutral part.
//
// Before any register of the target changes, a complete rt_sigreturn frame
// (general registers, FPU/vector state, signal mask) is written where the
// kernel itself would put a signal frame for the injecting thread. Every
// system call from then on runs so that, if ptyreclaim dies at that
// instant, the thread finishes what it is doing and returns through
// rt_sigreturn into that frame, exactly as it was:
//
//   - the calls that make and remove the scratch mapping run through a
//     "syscall; ret" already in the target's code, with the stack pointer
//     at the frame, whose return address is an rt_sigreturn sequence;
//   - everything else is one routine in the scratch mapping that reads an
//     op table and writes each result back: phase A probes which fds are
//     epoll instances and pauses; the tracer plans phase B from that and
//     the verdicts, writes it and flips one jump to it (a kill before the
//     flip runs the cleanup instead: nothing released); phase B makes the
//     replacements and removes the old files' epoll registrations, pauses
//     (a failed removal says a registration is another file's, sorted out
//     before any fd is touched), dup3s or closes each fd, registers the
//     replacements and pauses for the tracer's checks; then temporary fds
//     are closed, and the end op unmaps the routine and returns through
//     the frame.
//     A pause waits for the tracer a while (pselect6); a dead tracer never
//     comes, and the routine goes on by itself.
//
// With the tracer alive the release ends the same way, stepped through
// its last two system calls, and the registers, mask and vector state
// after rt_sigreturn are compared with the saved ones: every release
// proves its frame. The freeze no longer grows by a ptrace round trip
// per fd: the whole per-process sequence is one resume.

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/ptyreclaim/ptyreclaim/reclaim/procfs"
)

// defaultPauseTimeout is how long the routine waits at a pause for us
// before it goes on by itself: the longest a target whose tracer died
// keeps the injected thread in the routine, per pause. When we are alive
// we stop it there within microseconds.
const defaultPauseTimeout = 500 * time.Millisecond

// enginePrep is what the engine looks up before the freeze, so that the
// freeze only re-checks it.
type enginePrep struct {
	// Gadget addresses in the target's code and the bytes found there.
	sr, rt                uint64
	syscallRet, sigreturn []byte
	goRuntime             bool
	startStack            uint64
	reason                string // why the engine cannot run, if it cannot
}

// prepareEngine finds, in code that stays mapped as long as the process
// lives (the vDSO, the executable, libc and the dynamic loader), the two
// gadgets the engine needs, and notes facts about the stacks. It writes
// nothing, and reads no file on a FUSE mount (a user's server could hold
// the read for ever).
func prepareEngine(pid int) *enginePrep {
	p := &enginePrep{}
	if hostABI.name != "amd64" {
		p.reason = "the crash-safe engine exists for amd64 only (arm64: not built yet); call by call"
		return p
	}
	data, err := os.ReadFile(procPath(pid, "maps"))
	if err != nil {
		p.reason = fmt.Sprintf("cannot read the mappings: %v", err)
		return p
	}
	mounts, err := os.ReadFile(procPath(pid, "mountinfo"))
	if err != nil {
		p.reason = fmt.Sprintf("cannot read the mounts: %v", err)
		return p
	}
	exe, _ := os.Readlink(procPath(pid, "exe"))
	maps := parseMaps(data)
	// As in findInsn, a file mapping is read only if its device is one the
	// target's mount table shows served by the kernel (main's FUSE rule);
	// the path check on top refuses a path that now crosses a FUSE mount.
	table, err := procfs.MountsOf(pid)
	if err != nil {
		p.reason = fmt.Sprintf("cannot read the mount table: %v", err)
		return p
	}
	kernelFile := map[uint64]bool{}
	for _, m := range procfs.ParseMaps(data) {
		if m.Inode != 0 && m.Dev != 0 && table.KernelDev(m.Dev) {
			kernelFile[m.Start] = true
		}
	}
	exeOK := exe != "" && !fuseOnPath(mounts, exe)
	if exeOK {
		exeOK = false
		for _, m := range maps {
			if m.name == exe {
				exeOK = kernelFile[m.start]
				break
			}
		}
	}
	p.goRuntime = isGoProcess(pid, maps, exeOK)
	if st, err := os.ReadFile(procPath(pid, "stat")); err == nil {
		p.startStack = statStartStack(st)
	}
	mem, err := os.Open(procPath(pid, "mem"))
	if err != nil {
		p.reason = fmt.Sprintf("cannot read the memory: %v", err)
		return p
	}
	defer mem.Close()
	var order []mapping
	for _, m := range maps {
		if len(m.perms) < 3 || m.perms[2] != 'x' || m.end <= m.start {
			continue
		}
		switch {
		case m.name == "[vdso]":
			order = append([]mapping{m}, order...)
		case strings.HasPrefix(m.name, "/") && kernelFile[m.start] && (m.name == exe && exeOK || stableLibrary(m.name) && !fuseOnPath(mounts, m.name)):
			order = append(order, m)
		}
	}
	for _, m := range order {
		if p.sr != 0 && p.rt != 0 {
			break
		}
		code := make([]byte, min(m.end-m.start, 16<<20))
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
		p.reason = "no 'syscall; ret' sequence in the target's vDSO, executable or libc"
	case p.rt == 0:
		p.reason = "no rt_sigreturn sequence in the target's vDSO, executable or libc"
	}
	return p
}

// stableLibrary says whether a mapped file is libc or the dynamic loader,
// which no program unloads.
func stableLibrary(path string) bool {
	b := filepath.Base(path)
	return strings.HasPrefix(b, "libc.so") || strings.HasPrefix(b, "libc-") || strings.HasPrefix(b, "ld-linux") ||
		strings.HasPrefix(b, "ld-musl") || strings.HasPrefix(b, "libc.musl")
}

// isGoProcess says whether the target runs the Go runtime, whose goroutine
// stacks live in heap arenas and must never get a frame below their sp.
func isGoProcess(pid int, maps []mapping, exeReadable bool) bool {
	if exeReadable {
		if f, err := elf.Open(procPath(pid, "exe")); err == nil {
			defer f.Close()
			if f.Section(".go.buildinfo") != nil || f.Section(".gopclntab") != nil {
				return true
			}
		}
	}
	// A Go shared library in a C program: its heap starts here.
	for _, m := range maps {
		if m.start == 0xc000000000 {
			return true
		}
	}
	return !exeReadable // cannot tell: assume the worst
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
// a thread whose stack pointer is sp, without harming the program: where
// the kernel itself would put a signal frame, below the 128-byte red zone,
// on a stack proven to be a real stack with room, never on a Go goroutine
// stack (they are small, and Go takes every signal on its sigaltstack).
// It returns the 64-byte aligned address, or a reason.
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

type memPiece struct {
	addr uint64
	data []byte
}

// writeMem writes several pieces in one call (at most IOV_MAX per call).
func writeMem(pid int, pieces ...memPiece) error {
	for len(pieces) > 0 {
		batch := pieces[:min(len(pieces), 1024)]
		pieces = pieces[len(batch):]
		var local []unix.Iovec
		var remote []unix.RemoteIovec
		total := 0
		for _, p := range batch {
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
			continue
		}
		n, err := unix.ProcessVMWritev(pid, local, remote, 0)
		if err != nil {
			return err
		}
		if n != total {
			return fmt.Errorf("short write of %d of %d bytes", n, total)
		}
	}
	return nil
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

func setRegSet(tid int, nt int, buf []byte) error {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SETREGSET, uintptr(tid),
		uintptr(nt), uintptr(unsafe.Pointer(&iov)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// readFilters returns the thread's seccomp filters (PTRACE_SECCOMP_GET_FILTER,
// which needs CAP_SYS_ADMIN, like suspending them).
func readFilters(tid int) ([][]bpfInsn, error) {
	const getFilter = 0x420c
	var out [][]bpfInsn
	for i := 0; i < 512; i++ {
		n, _, e := unix.Syscall6(unix.SYS_PTRACE, getFilter, uintptr(tid), uintptr(i), 0, 0, 0)
		if e == unix.ENOENT {
			return out, nil
		}
		if e != 0 {
			return nil, e
		}
		buf := make([]byte, int(n)*8)
		if n > 0 {
			if _, _, e := unix.Syscall6(unix.SYS_PTRACE, getFilter, uintptr(tid), uintptr(i), uintptr(unsafe.Pointer(&buf[0])), 0, 0); e != 0 {
				return nil, e
			}
		}
		out = append(out, parseBPF(buf))
	}
	return nil, errors.New("more than 512 filters")
}

// statusFDSize reads FDSize (the fd table's size: every fd is below it)
// from /proc/PID/status.
func statusFDSize(data []byte) (int, bool) {
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "FDSize:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil && n > 0
		}
	}
	return 0, false
}

// errFault is a fatal signal our own code caused in the target.
var errFault = errors.New("the injected routine faulted")

// errStuck: the thread did not stop when interrupted.
var errStuck = errors.New("the thread did not stop when interrupted")

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
				t.threads[tid].state = running
				return errStuck
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
				t.threads[tid].state = stopped
				return nil
			}
			// A group-stop: not our interrupt; let it go on.
		} else if sig := ws.StopSignal(); uint32(ws)>>16 == 0 && sig != unix.SIGTRAP && sig != unix.SIGTRAP|0x80 {
			switch sig {
			case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGSYS:
				// Every signal is blocked, so this is forced by
				// something our routine did: stop here, suppressed.
				t.notes = append(t.notes, fmt.Sprintf("the injected routine caused %v in thread %d (suppressed)", sig, tid))
				t.threads[tid].state = stopped
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
// or died.
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

func (r *run) hook(point string) {
	if r.t.hook != nil {
		r.t.hook(point)
	}
}

// fallback means: nothing was released and the thread is exactly as
// found; use the call-by-call path.
type fallback struct{ reason string }

func (f *fallback) Error() string { return f.reason }

// engine is one crash-safe release on r.tid.
type engine struct {
	r       *run
	p       *enginePrep
	arch    archState
	mask    uint64 // the thread's original blocked set
	blocked bool   // the full mask is in force
	frameAt uint64 // the restore frame (its return-address slot)
	// restartBlock: the thread was in a call restarted through
	// restart_syscall, whose state rt_sigreturn would discard; the tracer
	// then restores it directly (the frame restarts the original call
	// instead, for the case where we die).
	restartBlock bool
	fdsize       int
	filters      [][]bpfInsn
	pause        time.Duration

	scratch, size uint64
	tabA          opTable
	scanPair      uint64 // int32 pair: the probe pipe's read and write ends
	scanList      uint64
	scanOut       uint64
	scanN         int
	jumpOp        int // index in tabA of the jump to flip
	pauseA        int
	finalA        int
	tabB          opTable
	opsCapB       int
	pauseD        int
	pauseV, final int
	byID          map[fileID][]*group
	plan          []*engGroup
	repls         []*engRepl
}

// engRepl is one replacement the routine creates.
type engRepl struct {
	key     replKey
	create  int    // the op making it
	ready   int    // the op whose success means it is usable
	tmpAddr uint64 // where its int32 fd number is
	repl    *replacement
	failed  string
}

type replKey struct {
	m        Method
	nonblock bool
	// group: hangup and quiet make one socket per released file (as each
	// PTY fd was its own), so that a program's shutdown, O_NONBLOCK or
	// socket option on one fd does not reach the others; -1 for devnull.
	group int
}

// engGroup is one group's ops in phase B.
type engGroup struct {
	g          *group
	repl       *engRepl
	dels, adds []int
	// gate is the op whose success lets the group's fds be acted on: its
	// last epoll removal, or its replacement (-1: none).
	gate     int
	acts     []int // dup3 or close, one per fd
	fallback []int // devnull: close if /dev/null could not be opened
}

// planEngine decides, writing nothing, whether the crash-safe engine can
// run on the chosen thread; nil means call by call, with the reason in the
// report.
func (r *run) planEngine() *engine {
	refuse := func(reason string) *engine {
		r.rep.CrashSafe, r.rep.CrashSafeReason = false, reason
		return nil
	}
	p := r.eng
	switch {
	case p == nil:
		return refuse("the crash-safe engine was not prepared")
	case p.reason != "":
		return refuse(p.reason)
	}
	e := &engine{r: r, p: p, pause: defaultPauseTimeout}
	if r.t.pauseTimeout > 0 {
		e.pause = r.t.pauseTimeout
	}
	pid := r.t.PID
	for _, g := range []struct {
		addr uint64
		want []byte
	}{{p.sr, p.syscallRet}, {p.rt, p.sigreturn}} {
		got := make([]byte, len(g.want))
		if err := readMem(pid, g.addr, got); err != nil || !bytes.Equal(got, g.want) {
			return refuse("the target's code changed since it was scanned")
		}
	}
	mask, err := getSigmask(r.tid)
	if err != nil {
		return refuse(fmt.Sprintf("cannot read the signal mask: %v", err))
	}
	e.mask = mask
	st, err := os.ReadFile(procPath(pid, "status"))
	if err != nil {
		return refuse(fmt.Sprintf("cannot read the status: %v", err))
	}
	var ok bool
	if e.fdsize, ok = statusFDSize(st); !ok {
		return refuse("cannot read the size of the fd table")
	}
	if why := e.archSetup(); why != "" {
		return refuse(why)
	}
	if r.filtered {
		f, err := readFilters(r.tid)
		if err != nil {
			return refuse(fmt.Sprintf("the target's seccomp filter cannot be read (%v), so whether it forbids new executable memory or would refuse the routine's calls if we died is unknown", err))
		}
		e.filters = f
		if why := e.checkFilters(); why != "" {
			return refuse(why)
		}
	}
	if why := r.engineFDRoom(); why != "" {
		return refuse(why)
	}
	return e
}

// engineFDRoom says why the engine must not run when the target's fd limit
// cannot hold what it needs at once: it makes every replacement before it
// touches any fd, so each hangup or quiet file costs two fds (the
// temporary end, closed at the end, and the hidden end that stays) at the
// peak, plus its probe pipe's read end; the call-by-call path closes each
// temporary end at once and budgets the hidden ends (budgetHiddenEnds).
func (r *run) engineFDRoom() string {
	pollable := 0
	for _, g := range r.groups {
		if g.skip == "" && g.method.Pollable() {
			pollable++
		}
	}
	if pollable == 0 {
		return ""
	}
	ents, err := os.ReadDir(procPath(r.t.PID, "fd"))
	limits, lerr := os.ReadFile(procPath(r.t.PID, "limits"))
	soft, perr := parseNofileSoft(limits)
	if err != nil || lerr != nil || perr != nil {
		return "the target's fd limit could not be read; call by call"
	}
	if room := hiddenEndsRoom(len(ents), soft); 2*pollable+1 > room {
		return fmt.Sprintf("pid %d has %d of its %d fds open: too few left for the engine's %d temporary and hidden socket ends at once; call by call", r.t.PID, len(ents), soft, 2*pollable+1)
	}
	return ""
}

// checkFilters asks the thread's seccomp filters about every call the
// engine makes, with the arguments it uses (fd numbers aside): the filter
// is suspended for us, but not for the routine once we are dead, and a
// filter that forbids new executable memory must be obeyed.
func (e *engine) checkFilters() string {
	a := hostABI
	ask := func(ip uint64, nr uint64, args ...uint64) (bool, string) {
		d := seccompData{nr: int32(nr), arch: auditArchX86_64, ip: ip}
		copy(d.args[:], args)
		return filtersAllow(e.filters, &d)
	}
	if ok, why := ask(e.p.sr+2, sysMprotectAMD64, 0x10000, pageSize, protRX); !ok {
		return "the target forbids new executable memory (its seccomp filter refuses mprotect PROT_EXEC: " + why + "); call by call"
	}
	if ok, why := ask(e.p.sr+2, a.mmap, 0, 1<<20, protRW, mapPrivAnon, ^uint64(0), 0); !ok {
		return "the target's seccomp filter refuses mmap (" + why + "); call by call"
	}
	calls := []struct {
		name string
		nr   uint64
		args []uint64
	}{
		{"munmap", a.munmap, []uint64{0x10000, 1 << 20}},
		{"rt_sigreturn", sysRtSigreturnAMD64, nil},
		{"pselect6", sysPselect6AMD64, []uint64{0, 0, 0, 0, 0x10000, 0}},
		{"pipe2", a.pipe2, []uint64{0x10000, oCLOEXEC}},
		{"pipe2", a.pipe2, []uint64{0x10000, oCLOEXEC | oNONBLOCK}},
		{"close", a.close, []uint64{3}},
		{"epoll_ctl", a.epollCtl, []uint64{3, epollCtlDel, 4, 0}},
		{"epoll_ctl", a.epollCtl, []uint64{3, epollCtlAdd, 4, 0x10000}},
		{"fcntl", sysFcntlAMD64, []uint64{3, fGETFD}},
		{"dup3", a.dup3, []uint64{3, 4, 0}},
		{"dup3", a.dup3, []uint64{3, 4, oCLOEXEC}},
		{"openat", a.openat, []uint64{atFDCWD, 0x10000, oRDWR | oCLOEXEC, 0}},
		{"socketpair", a.socketpair, []uint64{afUNIX, sockSTREAM | oCLOEXEC, 0, 0x10000}},
		{"socketpair", a.socketpair, []uint64{afUNIX, sockSTREAM | oCLOEXEC | oNONBLOCK, 0, 0x10000}},
		{"shutdown", a.shutdown, []uint64{3, shutRD}},
	}
	for _, c := range calls {
		ip := uint64(0x10000 + rtStore)
		if c.name == "munmap" {
			ip = e.p.sr + 2
		} else if c.name == "rt_sigreturn" {
			ip = e.p.rt + uint64(len(e.p.sigreturn))
		}
		if ok, why := ask(ip, c.nr, c.args...); !ok {
			return fmt.Sprintf("the target's seccomp filter would refuse %s (%s) once ptyreclaim is gone: a kill mid-release could not be finished safely; call by call", c.name, why)
		}
	}
	return ""
}

// run releases fds through the engine. handled is false, with nothing
// released and the thread exactly as found, when the engine had to give up
// before changing anything the call-by-call path could not redo; the caller
// then uses that path.
func (e *engine) run(fds []int, v *verification) (handled bool, err error) {
	r := e.r
	pid := r.t.PID
	e.stage("planned")
	// Nothing is written unless some fd passed its checks (they come in
	// order; the first is usually there at once).
	some := false
	for _, g := range r.groups {
		if r.settleVerdicts(g, v) {
			some = true
			break
		}
	}
	if !some {
		return true, nil
	}
	if err := writeMem(pid, memPiece{e.frameAt, e.arch.frame}); err != nil {
		r.rep.CrashSafe, r.rep.CrashSafeReason = false, fmt.Sprintf("cannot write the restore frame: %v", err)
		return false, nil
	}
	r.rep.CrashSafe, r.rep.CrashSafeReason = true, ""
	r.rep.Restore = RestoreNotDone
	r.log.Debug("restore frame written", zap.Int("tid", r.tid), zap.String("at", fmt.Sprintf("%#x", e.frameAt)), zap.Int("bytes", len(e.arch.frame)))
	r.hook("saved")
	if undo := r.shareCPU(); undo != nil {
		defer undo()
	}

	err = e.release(fds, v)
	var fb *fallback
	if errors.As(err, &fb) {
		if rerr := e.restoreDirect(); rerr != nil {
			return true, e.report(rerr)
		}
		if r.rep.Restore == RestoreNotDone {
			r.rep.Restore = RestoreDone
		}
		r.rep.CrashSafe, r.rep.CrashSafeReason = false, fb.reason
		r.rep.Notes = append(r.rep.Notes, "crash-safe engine not used: "+fb.reason)
		return false, nil
	}
	return true, e.report(err)
}

// report turns the engine's outcome into the run's error and Restore.
func (e *engine) report(err error) error {
	r := e.r
	gone := errors.Is(err, errGone) || r.tr.threads[r.tid].state == gone
	reason := "release aborted"
	if err != nil {
		reason = fmt.Sprintf("release aborted: %v", err)
	}
	changed := false
	for _, f := range r.rep.FDs {
		if f.Result == ResultDone || f.Result == ResultFailed {
			changed = true
		}
	}
	r.skipPending(reason)
	if r.tr.trapped > 0 {
		r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("the target's seccomp filter trapped %d injected call(s); the SIGSYS was withheld", r.tr.trapped))
	}
	switch {
	case gone:
		r.rep.Restore = RestoreGone
		return fmt.Errorf("pid %d exited during the release", r.t.PID)
	case r.stuck:
		r.rep.Restore = RestoreNotDone
		return fmt.Errorf("pid %d: thread %d is still inside an injected %s that did not return within %v and did not stop when interrupted (state %s, wchan %s): it was NOT restored yet; "+
			"if the call ever returns, the routine skips the rest, closes its temporary fds and returns the thread to its own state through the restore frame",
			r.t.PID, r.tid, r.lastCall, r.callTimeout(), r.tr.taskState(r.tid), r.wchan())
	case r.rep.Restore != RestoreDone:
		r.rep.Restore = RestoreNotDone
		return fmt.Errorf("pid %d: %v: the thread was NOT restored", r.t.PID, err)
	case err == nil:
		return nil
	case changed:
		r.rep.Notes = append(r.rep.Notes, reason+"; the thread was restored")
		return nil
	}
	return fmt.Errorf("pid %d: %v; restored it", r.t.PID, err)
}

// stage logs how far into the freeze a step ended, to see where the
// freeze goes.
func (e *engine) stage(name string) {
	if ce := e.r.log.Check(zap.DebugLevel, "engine stage"); ce != nil {
		ce.Write(zap.String("stage", name), zap.Duration("since_frozen", time.Since(e.r.tr.firstStop)))
	}
}

// chain runs one system call through the target's "syscall; ret" with the
// stack pointer at the restore frame: dying at any instant of it, the
// thread finishes the call and returns through the frame.
func (e *engine) chain(point string, nr uint64, args ...uint64) (uint64, int, error) {
	r := e.r
	var a [6]uint64
	copy(a[:], args)
	regs := e.chainRegs(nr, a)
	if err := setRegs(r.tid, &regs); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return 0, 0, errGone
		}
		return 0, 0, fmt.Errorf("setting registers: %v", err)
	}
	r.resumed = true
	if err := e.block(); err != nil {
		return 0, 0, err
	}
	r.lastCall = point
	deadline := time.Now().Add(r.callTimeout())
	if err := r.tr.syscallStop(r.tid, deadline); err != nil {
		return 0, 0, err
	}
	r.hook(point + "-entry")
	if err := r.tr.syscallStop(r.tid, deadline); err != nil {
		return 0, 0, err
	}
	r.hook(point + "-exit")
	out, err := getRegs(r.tid)
	if err != nil {
		return 0, 0, fmt.Errorf("reading registers: %v", err)
	}
	v, errno := decodeResult(out.result())
	if ce := r.log.Check(zap.DebugLevel, "covered call"); ce != nil {
		ce.Write(zap.String("call", point), zap.Uint64s("args", args), zap.Uint64("value", v), zap.Int("errno", errno))
	}
	return v, errno, nil
}

// block blocks every signal, once the registers already point into code
// covered by the frame: dying between the two leaves a thread that runs
// covered code with its own mask, which the frame restores anyway.
func (e *engine) block() error {
	if e.blocked {
		return nil
	}
	if err := setSigmask(e.r.tid, ^uint64(0)); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return fmt.Errorf("blocking signals: %v", err)
	}
	e.blocked = true
	return nil
}

// release runs the whole sequence; the thread is restored (or the reason
// it could not be is returned) when it returns.
func (e *engine) release(fds []int, v *verification) error {
	r := e.r
	a := hostABI
	pid := r.t.PID
	opsB, size := scratchSize(len(fds), e.fdsize)
	// Probing every fd number below FDSize is one cheap call each in the
	// target; a big sparse table is probed by the open numbers only
	// (listing them costs about a microsecond each). Since Linux 6.2 the
	// size of /proc/PID/fd is the number of open fds.
	var list []int32
	open := int64(0)
	var st unix.Stat_t
	if unix.Stat(procPath(pid, "fd"), &st) == nil {
		open = st.Size
	}
	if e.fdsize <= 4096 || open > int64(e.fdsize)/8 || open == 0 && e.fdsize <= 1<<14 {
		list = make([]int32, e.fdsize)
		for i := range list {
			list[i] = int32(i)
		}
	} else {
		ents, err := os.ReadDir(procPath(pid, "fd"))
		if err != nil {
			return &fallback{fmt.Sprintf("cannot list the fds: %v", err)}
		}
		for _, en := range ents {
			if n, err := strconv.Atoi(en.Name()); err == nil {
				list = append(list, int32(n))
			}
		}
		_, size = scratchSize(len(fds), len(list))
	}
	addr, errno, err := e.chain("mmap", a.mmap, 0, uint64(size), protRW, mapPrivAnon, ^uint64(0), 0)
	if err != nil {
		return e.abortChain(err)
	}
	if errno != 0 {
		return &fallback{fmt.Sprintf("mmap in the target failed: %v", unix.Errno(errno))}
	}
	e.scratch, e.size = addr, uint64(size)
	S := e.scratch

	// Phase A: probe the epoll fds, pause, jump to the cleanup (flipped
	// to phase B once it is written).
	ar := arena{next: S + scrHeader + hdrLen, end: S + uint64(size)}
	at, _ := ar.take(16 * opSize)
	e.tabA = opTable{base: at}
	e.scanPair, _ = ar.take(8)
	e.scanN = len(list)
	e.scanList, _ = ar.take(4 * len(list))
	e.scanOut, _ = ar.take(len(list))
	opsAt, _ := ar.take(opsB * opSize)
	e.tabB = opTable{base: opsAt}
	e.opsCapB = opsB
	dataB := arena{next: ar.next, end: ar.end}

	t := &e.tabA
	p := t.add(rop{nr: uint32(a.pipe2), args: [6]uint64{e.scanPair, oCLOEXEC}})
	t.add(rop{nr: uint32(a.close), flags: indirect(0) | flagIfOK, guard: t.result(p), args: [6]uint64{e.scanPair + 4}})
	t.add(rop{op: opScan, args: [6]uint64{e.scanList, uint64(len(list)), e.scanPair, e.scanOut}})
	e.pauseA = t.add(rop{op: opPause})
	e.jumpOp = t.add(rop{op: opJump, flags: flagCleanup})
	cleanupA := t.add(rop{nr: uint32(a.close), flags: indirect(0) | flagCleanup, args: [6]uint64{e.scanPair}})
	e.finalA = t.add(rop{op: opPause, flags: flagCleanup})
	t.add(rop{op: opEnd, flags: flagCleanup})
	t.ops[e.jumpOp].args[0] = t.addr(cleanupA)

	code := make([]byte, pageSize)
	copy(code, e.routineCode())
	listBytes := make([]byte, 4*len(list))
	for i, fd := range list {
		binary.LittleEndian.PutUint32(listBytes[4*i:], uint32(fd))
	}
	hdr := encodeHeader(e.pause.Nanoseconds(), e.frameAt, e.p.sr, S, uint64(size), t.addr(0))
	if err := writeMem(pid, memPiece{S, code}, memPiece{S + scrHeader, hdr}, memPiece{t.base, t.encode()},
		memPiece{e.scanPair, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}, memPiece{e.scanList, listBytes}); err != nil {
		return e.abortChain(fmt.Errorf("writing the routine: %v", err))
	}
	if _, errno, err := e.chain("mprotect", sysMprotectAMD64, S, pageSize, protRX); err != nil {
		return e.abortChain(err)
	} else if errno != 0 {
		return &fallback{fmt.Sprintf("the target forbids new executable memory (mprotect PROT_EXEC: %v); call by call", unix.Errno(errno))}
	}

	regs := e.routineRegs()
	if err := setRegs(r.tid, &regs); err != nil {
		return e.abortChain(fmt.Errorf("setting registers: %v", err))
	}
	if err := e.cont(); err != nil {
		return e.abortChain(err)
	}
	r.lastCall = "routine (phase A)"
	r.hook("routine-started")
	e.stage("routine started")
	if err := e.waitPause(t.addr(e.pauseA)); err != nil {
		return e.abortRoutine(err)
	}
	r.hook("paused")
	e.stage("phase A done")

	// At pause A, stopped: what the probe found.
	resA := make([]byte, t.size())
	if err := readMem(pid, t.base, resA); err != nil {
		return e.abortRoutine(fmt.Errorf("reading the routine's results: %v", err))
	}
	resultsA := decodeResults(resA, len(t.ops))
	if scan := resultsA[2]; scan != 0 {
		if errno := errnoOf(resultsA[0]); errno == int(unix.EMFILE) || errno == int(unix.ENFILE) {
			// At its fd limit the target cannot give the probe a pipe;
			// the call-by-call path can still close fds.
			if err := e.abortRoutine(nil); err != nil {
				return err
			}
			return &fallback{"the target is at its fd limit: the routine's probe pipe could not be made; call by call"}
		}
		return e.abortRoutine(fmt.Errorf("probing the epoll fds in the target failed (pipe2 %s, probe %s)", describeRaw(resultsA[0]), describeRaw(scan)))
	}
	out := make([]byte, len(list))
	if err := readMem(pid, e.scanOut, out); err != nil {
		return e.abortRoutine(fmt.Errorf("reading the epoll probe: %v", err))
	}
	var efds []int
	for i, b := range out {
		if b == 1 {
			efds = append(efds, int(list[i]))
		}
	}
	sets, err := r.readEpollSets(efds)
	if err != nil {
		return e.abortRoutine(err)
	}
	e.assignEpoll(sets)
	e.stage("epoll registrations read")

	if err := e.planB(v, &dataB); err != nil {
		return e.abortRoutine(err)
	}
	e.stage("phase B planned")
	if len(e.plan) > 0 {
		if err := writeMem(pid, memPiece{e.tabB.base, e.tabB.encode()}); err != nil {
			return e.abortRoutine(fmt.Errorf("writing phase B: %v", err))
		}
		// The flip: one aligned word, written last. Killed before it,
		// the routine cleans up; after it, it releases everything.
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], e.tabB.addr(0))
		if err := writeMem(pid, memPiece{t.addr(e.jumpOp) + 16, w[:]}); err != nil {
			return e.abortRoutine(fmt.Errorf("writing phase B: %v", err))
		}
		r.hook("flipped")
	}
	if err := e.resumePause(); err != nil {
		return e.abortRoutine(err)
	}
	r.hook("resumed")
	if len(e.plan) == 0 {
		if err := e.waitPause(t.addr(e.finalA)); err != nil {
			return e.abortRoutine(err)
		}
		return e.finalRestore()
	}
	r.lastCall = "routine (phase B)"
	if err := e.waitPause(e.tabB.addr(e.pauseD)); err != nil {
		return e.abortRoutine(err)
	}
	r.hook("removed")
	if why, err := e.removalsFailed(); err != nil {
		return e.abortRoutine(err)
	} else if why != "" {
		if err := e.abortRoutine(nil); err != nil {
			return err
		}
		return &fallback{why + "; call by call"}
	}
	if err := e.resumePause(); err != nil {
		return e.abortRoutine(err)
	}
	if err := e.waitPause(e.tabB.addr(e.pauseV)); err != nil {
		return e.abortRoutine(err)
	}
	r.hook("verify")
	e.stage("phase B done")
	if err := e.judgeB(); err != nil {
		return e.abortRoutine(err)
	}
	e.stage("checked")
	if err := e.resumePause(); err != nil {
		return e.abortRoutine(err)
	}
	if err := e.waitPause(e.tabB.addr(e.final)); err != nil {
		return e.abortRoutine(err)
	}
	r.hook("final")
	e.stage("cleaned up")
	err = e.finalRestore()
	e.stage("restored")
	return err
}

// planB builds phase B from the groups that passed their checks, the same
// decisions as the call-by-call path makes: /dev/null on FUSE becomes a
// hang-up; one replacement per method and O_NONBLOCK; the old file's epoll
// registrations removed first and made again for the replacement (or the
// old file, if its fds could not be replaced) with the same events and
// data; close-on-exec of every fd kept. Phase B pauses once after the
// removals (pause D), before any fd is touched: see removalsFailed. Unlike
// the call-by-call path, a target out of fds falls back to close for every
// devnull group of the release.
func (e *engine) planB(v *verification, data *arena) error {
	r := e.r
	a := hostABI
	t := &e.tabB
	devnullProblem := ""
	checkedDevnull := false
	repls := map[replKey]*engRepl{}
	var pieces []memPiece
	guard := func(o rop, after int, flag uint16) rop {
		if after >= 0 {
			o.flags |= flag
			o.guard = t.result(after)
		}
		return o
	}
	// Every verdict is needed now: take a share of the checks.
	v.help()
	// Part 1: the replacements, then every group's epoll removals.
	for gi, g := range r.groups {
		if !r.settleVerdicts(g, v) {
			continue
		}
		// Room for this group's ops and data, and for the tail of the
		// table; the mapping was sized before the registrations were
		// known.
		if len(t.ops)+6+3*len(g.fds)+2*len(g.regs)+16 > e.opsCapB || data.end-data.next < uint64(64+16*len(g.regs)) {
			for _, fd := range g.fds {
				r.skip(fd, "too many epoll registrations for one release; try again")
			}
			continue
		}
		vd := v.get(g.idx[0])
		nonblock := vd.flags&oNONBLOCK != 0
		if g.method == MethodDevNull && !checkedDevnull {
			checkedDevnull = true
			if err := r.devNullUsable(); err != nil {
				devnullProblem = "used hangup instead of /dev/null: " + err.Error()
			}
		}
		if g.method == MethodDevNull && devnullProblem != "" {
			g.method, g.note = MethodHangup, devnullProblem
		}
		eg := &engGroup{g: g}
		if g.method != MethodClose {
			key := replKey{g.method, nonblock && g.method != MethodDevNull, -1}
			if g.method.Pollable() {
				key.group = gi
			}
			rp := repls[key]
			if rp == nil {
				rp = &engRepl{key: key}
				var flags uint64 = oCLOEXEC
				if key.nonblock {
					flags |= oNONBLOCK
				}
				switch g.method {
				case MethodDevNull:
					path, ok := data.take(len(devNullPath))
					if !ok {
						return errors.New("scratch mapping full")
					}
					pieces = append(pieces, memPiece{path, devNullPath})
					rp.create = t.add(rop{nr: uint32(a.openat), args: [6]uint64{atFDCWD, path, oRDWR | oCLOEXEC}})
					rp.ready, rp.tmpAddr = rp.create, t.result(rp.create)
				case MethodHangup, MethodQuiet:
					pair, ok := data.take(8)
					if !ok {
						return errors.New("scratch mapping full")
					}
					pieces = append(pieces, memPiece{pair, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
					// As makeReplacement: a socket pair whose other end
					// stays, hidden, in the target (writes accepted, never
					// SIGPIPE); for hangup shut down for reading, so reads
					// say EOF and poll says readable and RDHUP.
					rp.create = t.add(rop{nr: uint32(a.socketpair), args: [6]uint64{afUNIX, sockSTREAM | flags, 0, pair}})
					rp.ready = rp.create
					if g.method == MethodHangup {
						rp.ready = t.add(rop{nr: uint32(a.shutdown), flags: indirect(0) | flagIfOK, guard: t.result(rp.create), args: [6]uint64{pair, shutRD}})
					}
					rp.tmpAddr = pair
				}
				repls[key] = rp
				e.repls = append(e.repls, rp)
			}
			eg.repl = rp
		}
		prev := -1
		if eg.repl != nil {
			prev = eg.repl.ready
		}
		for _, reg := range g.regs {
			i := t.add(guard(rop{nr: uint32(a.epollCtl), args: [6]uint64{uint64(reg.efd), epollCtlDel, uint64(reg.tfd)}}, prev, flagIfOK))
			eg.dels = append(eg.dels, i)
			prev = i
		}
		eg.gate = prev
		e.plan = append(e.plan, eg)
	}
	if len(e.plan) == 0 {
		t.ops = nil
		return nil
	}
	e.pauseD = t.add(rop{op: opPause})
	// Part 2: the fds, then the registrations made again.
	for _, eg := range e.plan {
		g := eg.g
		for _, fd := range g.fds {
			if g.method == MethodClose {
				eg.acts = append(eg.acts, t.add(guard(rop{nr: uint32(a.close), args: [6]uint64{uint64(fd)}}, eg.gate, flagIfOK)))
				continue
			}
			eg.acts = append(eg.acts, t.add(guard(rop{nr: uint32(a.dup3), flags: indirect(0) | flagCloexec,
				args: [6]uint64{eg.repl.tmpAddr, uint64(fd)}}, eg.gate, flagIfOK)))
			if g.method == MethodDevNull && len(g.regs) == 0 {
				// Without /dev/null the fds are closed instead.
				eg.fallback = append(eg.fallback, t.add(rop{nr: uint32(a.close), flags: flagIfFailed,
					guard: t.result(eg.repl.ready), args: [6]uint64{uint64(fd)}}))
			}
		}
		// Registered again whatever each number now names; also after an
		// abort, so that the loop never loses a registration.
		for i, reg := range g.regs {
			ev, ok := data.take(a.epollEventSize)
			if !ok {
				return errors.New("scratch mapping full")
			}
			pieces = append(pieces, memPiece{ev, epollEvent(a, reg.events, reg.data)})
			eg.adds = append(eg.adds, t.add(rop{nr: uint32(a.epollCtl), flags: flagIfOK | flagCleanup, guard: t.result(eg.dels[i]),
				args: [6]uint64{uint64(reg.efd), epollCtlAdd, uint64(reg.tfd), ev}}))
		}
	}
	e.pauseV = t.add(rop{op: opPause})
	for _, rp := range e.repls {
		t.add(rop{nr: uint32(a.close), flags: indirect(0) | flagCleanup, args: [6]uint64{rp.tmpAddr}})
	}
	t.add(rop{nr: uint32(a.close), flags: indirect(0) | flagCleanup, args: [6]uint64{e.scanPair}})
	e.final = t.add(rop{op: opPause, flags: flagCleanup})
	t.add(rop{op: opEnd, flags: flagCleanup})
	if len(t.ops) > e.opsCapB {
		return fmt.Errorf("phase B needs %d ops, more than the scratch mapping holds", len(t.ops))
	}
	return writeMem(r.t.PID, pieces...)
}

// noteFileIDs records, before the freeze, each group's file device and
// inode from our copy (a copy's file never changes).
func (r *run) noteFileIDs() {
	for _, g := range r.groups {
		var st unix.Stat_t
		if unix.Fstat(r.copies[g.fds[0]], &st) == nil {
			g.id = fileID{dev: kernelDev(st.Dev), ino: st.Ino}
		}
	}
}

// kernelDev turns a stat st_dev into the kernel's encoding, which epoll's
// fdinfo prints as sdev.
func kernelDev(dev uint64) uint64 {
	return uint64(unix.Major(dev))<<20 | uint64(unix.Minor(dev))
}

// assignEpoll gives each group the registrations of its old file, like
// run.assignEpoll but without a kcmp per registration (KCMP_EPOLL_TFD walks
// the whole epoll set in the kernel: quadratic for big sets). A
// registration under one of the group's numbers with the file's device and
// inode is taken as the group's; the routine's own EPOLL_CTL_DEL of (the
// file at that number, that number) then proves it, before any fd is
// touched (pause D). Registrations under other numbers that may be one of
// the groups' files are identified exactly, by kcmp and a binary search
// over the groups in kcmp's order.
func (e *engine) assignEpoll(sets map[int][]epollReg) {
	r := e.r
	byFD := map[int]*group{}
	for _, g := range r.groups {
		for _, fd := range g.fds {
			byFD[fd] = g
		}
	}
	efds := make([]int, 0, len(sets))
	for efd := range sets {
		efds = append(efds, efd)
	}
	sort.Ints(efds)
	for _, efd := range efds {
		count := map[int]int{}
		for _, reg := range sets[efd] {
			count[reg.tfd]++
		}
		toff := map[int]int{}
		for _, reg := range sets[efd] {
			off := toff[reg.tfd]
			toff[reg.tfd]++
			id := fileID{reg.sdev, reg.ino}
			if g := byFD[reg.tfd]; g != nil && g.id == id && g.id.ino != 0 {
				if count[reg.tfd] > 1 {
					g.skip = fmt.Sprintf("registered twice in epoll fd %d under fd %d", efd, reg.tfd)
				}
				g.regs = append(g.regs, reg)
				continue
			}
			if h := e.ownerOf(id, efd, reg.tfd, off); h != nil {
				h.skip = fmt.Sprintf("registered in epoll fd %d under fd %d, which no longer names it: the registration cannot be moved", efd, reg.tfd)
			}
		}
	}
	for _, g := range r.groups {
		if len(g.regs) > 0 && !g.method.Pollable() && g.skip == "" && refuseUnpollable {
			g.skip = fmt.Sprintf("registered in epoll fd %d: method %s cannot be polled, its event loop would fail (use hangup or quiet)", g.regs[0].efd, g.method)
		}
	}
}

// ownerOf returns the group whose file is registered in epoll fd efd under
// tfd (the toff-th such entry), if any: only groups with the entry's device
// and inode can be, and kcmp orders files, so a binary search finds it.
func (e *engine) ownerOf(id fileID, efd, tfd, toff int) *group {
	if e.byID == nil {
		// Built the first time it is needed: most sets hold no file
		// that could be ours under another number.
		e.byID = map[fileID][]*group{}
		for _, g := range e.r.groups {
			if g.id.ino != 0 {
				e.byID[g.id] = append(e.byID[g.id], g)
			}
		}
		for _, gs := range e.byID {
			sort.Slice(gs, func(i, j int) bool { return gs[i].rank < gs[j].rank })
		}
	}
	gs := e.byID[id]
	lo, hi := 0, len(gs)
	for lo < hi {
		mid := (lo + hi) / 2
		c, ok := e.r.epollCmp(e.r.copies[gs[mid].fds[0]], efd, tfd, toff)
		switch {
		case !ok:
			return nil
		case c == 0:
			return gs[mid]
		case c == 1: // ours is before the registered file
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return nil
}

// epollCmp is kcmp(KCMP_EPOLL_TFD) of our fd ours and the file registered
// in the target's epoll fd efd under tfd: 0 same, 1 ours first, 2 after.
func (r *run) epollCmp(ours, efd, tfd, toff int) (int, bool) {
	slot := struct{ efd, tfd, toff uint32 }{uint32(efd), uint32(tfd), uint32(toff)}
	res, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(os.Getpid()), uintptr(r.t.PID), kcmpEpollTFD,
		uintptr(ours), uintptr(unsafe.Pointer(&slot)), 0)
	runtime.KeepAlive(&slot)
	return int(res), errno == 0
}

// removalsFailed runs at pause D: an epoll removal that failed with
// ENOENT says the registration under that number is another file's (the
// program reused the number without EPOLL_CTL_DEL), which may be one of the
// other groups' files, about to be released with its registration left
// behind. That rare case is left to the call-by-call path, which checks
// every registration with kcmp: the routine is aborted (it makes the
// removed registrations again) and nothing is released.
func (e *engine) removalsFailed() (string, error) {
	r := e.r
	t := &e.tabB
	raw := make([]byte, t.size())
	if err := readMem(r.t.PID, t.base, raw); err != nil {
		return "", fmt.Errorf("reading the routine's results: %v", err)
	}
	res := decodeResults(raw, len(t.ops))
	for _, eg := range e.plan {
		for i, d := range eg.dels {
			if res[d] != resSkipped && errnoOf(res[d]) == int(unix.ENOENT) {
				reg := eg.g.regs[i]
				return fmt.Sprintf("the registration in epoll fd %d under fd %d is not that fd's file", reg.efd, reg.tfd), nil
			}
		}
	}
	return "", nil
}

// judgeB reads phase B's outcome at its first pause (the temporary fds
// still open), takes our copies of the replacements and decides every
// fd's result from the kernel's view, as the call-by-call path does.
func (e *engine) judgeB() error {
	r := e.r
	pid := r.t.PID
	t := &e.tabB
	raw := make([]byte, t.size())
	if err := readMem(pid, t.base, raw); err != nil {
		return fmt.Errorf("reading the routine's results: %v", err)
	}
	res := decodeResults(raw, len(t.ops))
	for _, rp := range e.repls {
		var b [8]byte
		if err := readMem(pid, rp.tmpAddr, b[:]); err != nil {
			return fmt.Errorf("reading the routine's results: %v", err)
		}
		tmp := int(int32(binary.LittleEndian.Uint32(b[:])))
		peer := int(int32(binary.LittleEndian.Uint32(b[4:])))
		if rp.key.m == MethodDevNull {
			peer = -1
		}
		if !resultOK(res[rp.ready]) || tmp < 0 {
			raw := res[rp.ready]
			if !resultOK(res[rp.create]) {
				raw = res[rp.create]
			}
			rp.failed = describeRaw(raw)
			continue
		}
		rp.repl = &replacement{method: rp.key.m, nonblock: rp.key.nonblock, tmp: tmp, peer: peer, copy: -1}
		// Proven before it is copied, as on the call-by-call path
		// (copyReplacement: /dev/null from fdinfo and the mount table).
		c, link, err := copyReplacement(pid, r.pidfd, tmp, rp.key.m)
		rp.repl.link = link
		if err != nil {
			rp.failed = fmt.Sprintf("the new fd %d: %v", tmp, err)
			continue
		}
		rp.repl.copy = c
		if rp.key.m.Pollable() {
			var st unix.Stat_t
			if unix.Fstat(c, &st) == nil {
				rp.repl.id = fileID{kernelDev(st.Dev), st.Ino}
			}
		}
	}
	var acted []*group
	for _, eg := range e.plan {
		g := eg.g
		if rp := eg.repl; rp != nil {
			switch {
			case rp.repl == nil && rp.key.m == MethodDevNull:
				// The routine closed the fds instead.
				g.method, g.note = MethodClose, openatFallbackReason(errnoOf(res[rp.create]), describeRaw(res[rp.create]))
			case rp.repl == nil:
				// Nothing of the group was run.
				for _, fd := range g.fds {
					res := r.result(fd)
					res.Result, res.Reason = ResultFailed, fmt.Sprintf("could not create the %s replacement: %s", rp.key.m, rp.failed)
				}
				continue
			case rp.failed != "":
				// Made, but not what it should be: verifyAfter has no
				// replacement to prove the fds against, so they fail.
				g.note = rp.failed
			default:
				g.repl = rp.repl
			}
		}
		for i, d := range eg.dels {
			if !resultOK(res[d]) {
				if res[d] != resSkipped || i == 0 && eg.repl == nil {
					g.note = fmt.Sprintf("epoll_ctl DEL in epoll fd %d failed: %s; the fds were left as they were", g.regs[i].efd, describeRaw(res[d]))
				}
				break
			}
			g.deleted++
		}
		for i, act := range eg.acts {
			if raw := res[act]; !resultOK(raw) && raw != resSkipped && g.note == "" {
				what := "dup3"
				if g.method == MethodClose && len(eg.fallback) == 0 {
					what = "close"
				}
				g.note = fmt.Sprintf("%s of fd %d in the target failed: %s", what, g.fds[i], describeRaw(raw))
			}
		}
		for i, fb := range eg.fallback {
			if raw := res[fb]; raw != resSkipped && !resultOK(raw) && g.note == "" {
				g.note = fmt.Sprintf("close of fd %d in the target failed: %s", g.fds[i], describeRaw(raw))
			}
		}
		for _, add := range eg.adds {
			if resultOK(res[add]) {
				g.added++
			}
		}
		acted = append(acted, g)
	}
	for _, rp := range e.repls {
		if rp.repl != nil && rp.repl.copy >= 0 {
			c := rp.repl.copy
			defer unix.Close(c)
		}
	}
	r.verifyAfter(acted)
	for _, g := range acted {
		for _, fd := range g.fds {
			if res := r.result(fd); res.Result == ResultDone && g.note != "" {
				res.Reason = g.note
			} else if res.Result == ResultFailed && g.note != "" {
				res.Reason += " (" + g.note + ")"
			}
		}
	}
	peers := map[Method][]int{}
	for _, rp := range e.repls {
		if rp.repl != nil && rp.repl.peer >= 0 {
			peers[rp.key.m] = append(peers[rp.key.m], rp.repl.peer)
		}
	}
	for _, m := range []Method{MethodHangup, MethodQuiet} {
		if len(peers[m]) > 0 {
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("%s: the sockets' other ends stay open in pid %d at fds %v (close-on-exec), one per released file", m, pid, peers[m]))
		}
	}
	return nil
}

func errnoOf(raw uint64) int {
	_, errno := decodeResult(raw)
	return errno
}

// describeRaw says what a result slot holds.
func describeRaw(raw uint64) string {
	switch raw {
	case resNotRun:
		return "not reached"
	case resSkipped:
		return "skipped"
	}
	if _, errno := decodeResult(raw); errno != 0 {
		return unix.Errno(errno).Error()
	}
	return fmt.Sprintf("returned %d", int64(raw))
}

// cont resumes the thread into the routine.
func (e *engine) cont() error {
	r := e.r
	if err := unix.PtraceCont(r.tid, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return err
	}
	r.tr.threads[r.tid].state = running
	return nil
}

// errMoved: the routine went past the pause we waited for by itself (we
// were slower than the pause timeout).
type errMoved struct{ done uint64 }

func (m *errMoved) Error() string {
	return "the routine went on by itself before ptyreclaim stopped it (slower than its pause timeout)"
}

// waitPause polls the routine's done word until it shows the pause op at
// want, then stops the thread there. Any other stop, the target's death,
// a fault, or the call deadline end the wait with an error; the thread is
// stopped when the error allows (see abortRoutine).
func (e *engine) waitPause(want uint64) error {
	r := e.r
	pid, tid := r.t.PID, r.tid
	le := binary.LittleEndian
	deadline := time.Now().Add(r.callTimeout())
	done := make([]byte, 8)
	var nap time.Duration
	spinUntil := time.Now().Add(5 * time.Millisecond)
	for polls := 0; ; polls++ {
		if err := readMem(pid, e.scratch+scrHeader+hdrDone, done); err != nil {
			if processDying(pid) {
				return errGone
			}
			if !errors.Is(err, unix.EFAULT) {
				return fmt.Errorf("reading the routine's progress: %v", err)
			}
			// Unmapped: the routine ran its end op by itself.
			le.PutUint64(done, doneEnd)
		}
		if d := le.Uint64(done); d == want {
			r.hook("pause-seen")
			if err := e.stop(); err != nil {
				return err
			}
			regs, err := getRegs(tid)
			if err != nil {
				return fmt.Errorf("reading registers: %v", err)
			}
			// Stopped in a pause, but which: the one seen may have
			// timed out since, and every pause runs the same code.
			if err := readMem(pid, e.scratch+scrHeader+hdrDone, done); err != nil {
				le.PutUint64(done, doneEnd) // unmapped: the routine ended
			}
			if le.Uint64(done) == want && e.atPause(regs) {
				return nil
			}
			return &errMoved{le.Uint64(done)}
		} else if d != 0 && d != want && e.isLater(d, want) {
			if err := e.stop(); err != nil {
				return err
			}
			if err := readMem(pid, e.scratch+scrHeader+hdrDone, done); err != nil {
				le.PutUint64(done, doneEnd)
			}
			return &errMoved{le.Uint64(done)}
		}
		if polls%8 == 7 {
			ws, isStopped, err := r.tr.pollRunning(tid)
			if err != nil {
				return err
			}
			if isStopped {
				// A stop while the routine runs: a group-stop or a
				// signal; let the routine go on, keep the signal.
				if sig := ws.StopSignal(); uint32(ws)>>16 == 0 && sig != unix.SIGTRAP && sig != unix.SIGTRAP|0x80 {
					switch sig {
					case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE, unix.SIGSYS:
						r.tr.notes = append(r.tr.notes, fmt.Sprintf("the injected routine caused %v (suppressed)", sig))
						r.tr.threads[tid].state = stopped
						return errFault
					}
					r.tr.resignal = append(r.tr.resignal, pendingSignal{tid: tid, sig: sig})
				}
				if err := unix.PtraceCont(tid, 0); err != nil {
					return err
				}
			}
		}
		if time.Now().After(deadline) {
			if err := e.stop(); err != nil {
				return err
			}
			return errCallTimeout
		}
		if time.Now().Before(spinUntil) {
			unix.Syscall(unix.SYS_SCHED_YIELD, 0, 0, 0)
			continue
		}
		nap = min(max(2*nap, 10*time.Microsecond), time.Millisecond)
		time.Sleep(nap)
	}
}

// isLater says whether done word d is a pause after want (or the end).
func (e *engine) isLater(d, want uint64) bool {
	order := []uint64{e.tabA.addr(e.pauseA)}
	if len(e.tabB.ops) > 0 {
		order = append(order, e.tabB.addr(e.pauseD), e.tabB.addr(e.pauseV), e.tabB.addr(e.final))
	}
	order = append(order, e.tabA.addr(e.finalA), doneEnd)
	wi, di := -1, -1
	for i, o := range order {
		if o == want {
			wi = i
		}
		if o == d {
			di = i
		}
	}
	return di >= 0 && wi >= 0 && di > wi
}

// stop interrupts the running thread and waits for the stop.
func (e *engine) stop() error {
	r := e.r
	if err := unix.PtraceInterrupt(r.tid); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return err
	}
	err := r.tr.waitEventStop(r.tid, time.Now().Add(r.stopTimeout()))
	if errors.Is(err, errStuck) {
		r.stuck = true
	}
	return err
}

// resumePause lets the thread stopped at a pause go on at once.
func (e *engine) resumePause() error {
	r := e.r
	regs, err := getRegs(r.tid)
	if err != nil {
		return fmt.Errorf("reading registers: %v", err)
	}
	if next, ok := e.pastPause(regs); ok {
		if err := setRegs(r.tid, &next); err != nil {
			return fmt.Errorf("setting registers: %v", err)
		}
	}
	return e.cont()
}

// abortChain gives up while only chain calls ran (the routine never
// started): the thread is restored directly.
func (e *engine) abortChain(err error) error {
	if errors.Is(err, errGone) {
		return err
	}
	if rerr := e.restoreDirect(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// abortRoutine gives up once the routine runs. Stopped, the thread is
// told to abort (the routine then skips everything but the re-registration
// of epoll entries it removed and the closing of its temporary fds) and
// driven to its final pause, then restored. Not stopped (inside a call
// that ignores interrupts), the abort word is still written: if the call
// ever returns, the routine finishes that way by itself.
func (e *engine) abortRoutine(err error) error {
	r := e.r
	if errors.Is(err, errGone) {
		return err
	}
	if errors.Is(err, errFault) {
		// Our own code faulted: do not run it again.
		return errors.Join(err, e.restoreDirect())
	}
	var w [8]byte
	binary.LittleEndian.PutUint64(w[:], 1)
	werr := writeMem(r.t.PID, memPiece{e.scratch + scrHeader + hdrAbort, w[:]})
	var moved *errMoved
	if r.stuck || errors.As(err, &moved) && moved.done == doneEnd {
		if r.stuck {
			return err
		}
		// The routine already ended by itself: the thread restored
		// itself (or is about to) through the frame.
		return errors.Join(err, e.settleEnded())
	}
	if werr != nil {
		return errors.Join(err, fmt.Errorf("cannot abort the routine: %v", werr), e.restoreDirect())
	}
	regs, gerr := getRegs(r.tid)
	if gerr != nil {
		return errors.Join(err, gerr)
	}
	if e.atPause(regs) && e.doneIsFinal() {
		return errors.Join(err, e.finalRestore())
	}
	if next, ok := e.pastPause(regs); ok {
		regs = next
	} else if next, ok := e.pastStuckCall(regs); ok {
		regs = next
	}
	if serr := setRegs(r.tid, &regs); serr != nil {
		return errors.Join(err, serr)
	}
	if cerr := e.cont(); cerr != nil {
		return errors.Join(err, cerr)
	}
	if werr := e.waitFinal(); werr != nil {
		if errors.Is(werr, errGone) || r.stuck {
			return errors.Join(err, werr)
		}
		return errors.Join(err, werr, e.restoreDirect())
	}
	return errors.Join(err, e.finalRestore())
}

// doneIsFinal says whether the done word shows a final pause.
func (e *engine) doneIsFinal() bool {
	var w [8]byte
	if err := readMem(e.r.t.PID, e.scratch+scrHeader+hdrDone, w[:]); err != nil {
		return false
	}
	d := binary.LittleEndian.Uint64(w[:])
	return d == e.tabA.addr(e.finalA) || len(e.tabB.ops) > 0 && d == e.tabB.addr(e.final)
}

// waitFinal waits for whichever final pause the routine reaches.
func (e *engine) waitFinal() error {
	want := e.tabA.addr(e.finalA)
	if len(e.tabB.ops) > 0 {
		// After the flip the routine ends through phase B's final pause.
		var w [8]byte
		if err := readMem(e.r.t.PID, e.tabA.addr(e.jumpOp)+16, w[:]); err == nil && binary.LittleEndian.Uint64(w[:]) == e.tabB.addr(0) {
			want = e.tabB.addr(e.final)
		}
	}
	err := e.waitPause(want)
	var moved *errMoved
	if errors.As(err, &moved) && moved.done == doneEnd {
		return e.settleEnded()
	}
	return err
}

// finalRestore ends the routine from its final pause: the end op unmaps
// the scratch mapping and returns through the frame, stepped through both
// calls, and what rt_sigreturn restored is compared with what was saved
// (a difference is put right directly, and reported). A thread that was
// in a call restarted through restart_syscall is restored directly
// instead, after the unmap: rt_sigreturn would make that call fail EINTR.
func (e *engine) finalRestore() error {
	r := e.r
	tid := r.tid
	deadline := time.Now().Add(r.callTimeout())
	if e.restartBlock {
		regs := e.chainRegsAt(hostABI.munmap, [6]uint64{e.scratch, e.size})
		if err := setRegs(tid, &regs); err != nil {
			return fmt.Errorf("setting registers: %v", err)
		}
		return e.stepUnmapThenDirect(deadline)
	}
	regs, err := getRegs(tid)
	if err != nil {
		return fmt.Errorf("reading registers: %v", err)
	}
	if next, ok := e.pastPause(regs); ok {
		if err := setRegs(tid, &next); err != nil {
			return fmt.Errorf("setting registers: %v", err)
		}
	}
	r.lastCall = "munmap"
	for _, point := range []string{"munmap-entry", "munmap-exit", "sigreturn-entry", "sigreturn-exit"} {
		if err := r.tr.syscallStop(tid, deadline); err != nil {
			return err
		}
		r.hook(point)
	}
	e.scratch = 0
	r.resumed = false
	if why := e.compareRestored(); why != "" {
		r.rep.CrashSafe, r.rep.CrashSafeReason = false, "the restore frame did not restore the thread exactly ("+why+"); put right directly"
		r.rep.Notes = append(r.rep.Notes, r.rep.CrashSafeReason)
		r.log.Error("restore frame mismatch", zap.String("what", why))
		if err := e.putRight(); err != nil {
			return err
		}
	}
	r.rep.Restore = RestoreDone
	r.hook("restored")
	return nil
}

// stepUnmapThenDirect runs the munmap set up in the registers as a chain
// call and restores the thread directly after it.
func (e *engine) stepUnmapThenDirect(deadline time.Time) error {
	r := e.r
	r.lastCall = "munmap"
	if err := e.block(); err != nil {
		return err
	}
	if err := r.tr.syscallStop(r.tid, deadline); err != nil {
		return err
	}
	r.hook("munmap-entry")
	if err := r.tr.syscallStop(r.tid, deadline); err != nil {
		return err
	}
	r.hook("munmap-exit")
	out, err := getRegs(r.tid)
	if err == nil {
		if _, errno := decodeResult(out.result()); errno != 0 {
			r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("a %d-byte scratch mapping at %#x stays in pid %d: munmap failed: %v",
				e.size, e.scratch, r.t.PID, unix.Errno(errno)))
		}
	}
	e.scratch = 0
	return e.direct()
}

// direct puts the mask back, then the registers: dying between the two
// leaves the thread in covered code, which returns through the frame.
func (e *engine) direct() error {
	r := e.r
	if err := setSigmask(r.tid, e.mask); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return fmt.Errorf("could not restore the signal mask of thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	e.blocked = false
	if err := setRegs(r.tid, &r.base); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return fmt.Errorf("could not restore the registers of thread %d of pid %d: %v", r.tid, r.t.PID, err)
	}
	r.rep.Restore = RestoreDone
	r.hook("restored")
	return nil
}

// restoreDirect restores the thread from a stop outside the routine (or
// one it must not go on from): the scratch mapping, if any, is removed by
// a chain call first.
func (e *engine) restoreDirect() error {
	r := e.r
	if r.tr.threads[r.tid].state == gone {
		return errGone
	}
	if !r.resumed {
		// No register was changed (or the frame already restored them).
		if r.rep.Restore == RestoreNotDone {
			r.rep.Restore = RestoreUntouched
		}
		return nil
	}
	if e.scratch != 0 {
		regs := e.chainRegsAt(hostABI.munmap, [6]uint64{e.scratch, e.size})
		if err := setRegs(r.tid, &regs); err != nil {
			return fmt.Errorf("setting registers: %v", err)
		}
		return e.stepUnmapThenDirect(time.Now().Add(r.callTimeout()))
	}
	return e.direct()
}

// settleEnded handles a routine that ended by itself while we were alive
// (we were too slow): the thread is stopped and, if still in the final
// two calls, stepped to the end of rt_sigreturn.
func (e *engine) settleEnded() error {
	r := e.r
	if r.tr.threads[r.tid].state != stopped {
		if err := e.stop(); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(r.callTimeout())
	for i := 0; i < 4; i++ {
		regs, err := getRegs(r.tid)
		if err != nil {
			return err
		}
		if !e.inFinalCalls(regs) {
			break
		}
		if err := r.tr.syscallStop(r.tid, deadline); err != nil {
			return err
		}
	}
	e.scratch = 0
	r.resumed = false
	r.rep.Restore = RestoreDone
	r.rep.Notes = append(r.rep.Notes, fmt.Sprintf("the routine restored thread %d by itself through the restore frame", r.tid))
	return nil
}
