package inject

// Pure helpers: no system calls here, so every architecture's tables and
// decoders are unit-tested on any machine.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// abi holds the syscall numbers and instruction bytes of one architecture.
type abi struct {
	name           string
	openat         uint64
	dup3           uint64
	close          uint64
	mmap           uint64
	munmap         uint64
	pipe2          uint64 // the engine's probe pipe
	socketpair     uint64
	shutdown       uint64
	epollCtl       uint64
	restartSyscall uint64
	// epollEventSize is sizeof(struct epoll_event): packed on x86-64.
	epollEventSize int
	// insn is the syscall instruction; insnAlign is where it may start.
	insn      []byte
	insnAlign uint64
	// ownPC says the calls may run at the stopped thread's own pc. Not on
	// arm64: a thread interrupted inside a sleep (ERESTART_RESTARTBLOCK) is
	// rewound to its svc before the stop, and when it is resumed with pc
	// still there the kernel sets x8 to restart_syscall after the stop, so
	// the first injected call would run the sleep's restart instead (x86
	// does that before the stop, where normaliseAMD64 sees it).
	ownPC bool
}

var abiAMD64 = abi{
	name: "amd64", openat: 257, dup3: 292, close: 3, mmap: 9, munmap: 11,
	pipe2: 293, socketpair: 53, shutdown: 48, epollCtl: 233,
	restartSyscall: 219, epollEventSize: 12,
	insn:      []byte{0x0f, 0x05}, // syscall
	insnAlign: 1,
	ownPC:     true,
}

var abiARM64 = abi{
	name: "arm64", openat: 56, dup3: 24, close: 57, mmap: 222, munmap: 215,
	pipe2: 59, socketpair: 199, shutdown: 210, epollCtl: 21,
	restartSyscall: 128, epollEventSize: 16,
	insn:      []byte{0x01, 0x00, 0x00, 0xd4}, // svc #0
	insnAlign: 4,
}

// Kernel-internal restart codes a thread stopped inside a syscall may hold.
const (
	errRestartSys          = 512
	errRestartNoIntr       = 513
	errRestartNoHand       = 514
	errRestartRestartBlock = 516
)

// Flags and constants shared by both Linux ABIs (asm-generic and x86 agree).
const (
	oRDWR       = 0x2
	oNOCTTY     = 0x100
	oCLOEXEC    = 0x80000 // 02000000 octal
	oNONBLOCK   = 0x800   // 04000 octal
	afUNIX      = 1
	sockSTREAM  = 1
	shutRD      = 0
	epollCtlAdd = 1
	epollCtlDel = 2
	// epollWakeup is dropped by the kernel without CAP_BLOCK_SUSPEND, so
	// a re-registration is compared without it.
	epollWakeup = 1 << 29
	atFDCWD     = ^uint64(99) // -100
	protRW      = 0x3
	mapPrivAnon = 0x22 // MAP_PRIVATE|MAP_ANONYMOUS
	pageSize    = 4096
)

// decodeResult splits a raw syscall return register into a value and an
// errno: the kernel returns -4095..-1 for errors.
func decodeResult(raw uint64) (value uint64, errno int) {
	v := int64(raw)
	if v >= -4095 && v <= -1 {
		return 0, int(-v)
	}
	return raw, 0
}

// normaliseAMD64 rewrites the registers of a thread stopped inside an
// interrupted syscall the way the kernel would on restart, so that resuming
// at the returned rip re-runs the call and the program never sees EINTR.
// origRax < 0 means the thread was not in a syscall.
func normaliseAMD64(origRax, rax, rip uint64, restartSyscall uint64) (newRax, newRip uint64, restarted bool) {
	if int64(origRax) < 0 {
		return rax, rip, false
	}
	switch int64(rax) {
	case -errRestartSys, -errRestartNoIntr, -errRestartNoHand:
		return origRax, rip - 2, true
	case -errRestartRestartBlock:
		return restartSyscall, rip - 2, true
	}
	return rax, rip, false
}

// mapping is one line of /proc/PID/maps.
type mapping struct {
	start, end uint64
	perms      string
	name       string
}

func parseMaps(data []byte) []mapping {
	var out []mapping
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		m := mapping{start: start, end: end, perms: f[1]}
		if len(f) >= 6 {
			m.name = strings.Join(f[5:], " ")
		}
		out = append(out, m)
	}
	return out
}

// findSyscallInsn returns the address of the first syscall instruction in
// code, which starts at base, honouring the ABI's alignment.
func findSyscallInsn(code []byte, base uint64, a abi) (uint64, bool) {
	for off := 0; off+len(a.insn) <= len(code); {
		j := bytes.Index(code[off:], a.insn)
		if j < 0 {
			return 0, false
		}
		addr := base + uint64(off+j)
		if addr%a.insnAlign == 0 {
			return addr, true
		}
		off += j + 1
	}
	return 0, false
}

// elfClass returns 32 or 64 from the start of an ELF file.
func elfClass(hdr []byte) (int, error) {
	if len(hdr) < 5 || !bytes.Equal(hdr[:4], []byte("\x7fELF")) {
		return 0, errors.New("not an ELF file")
	}
	switch hdr[4] {
	case 1:
		return 32, nil
	case 2:
		return 64, nil
	}
	return 0, fmt.Errorf("unknown ELF class %d", hdr[4])
}

// openatFallbackReason says why openat of /dev/null failing made us close.
func openatFallbackReason(errno int, errText string) string {
	switch errno {
	case 24: // EMFILE
		return "fell back to close: target at its fd limit"
	case 23: // ENFILE
		return "fell back to close: system file table full"
	case 2: // ENOENT
		return "fell back to close: no /dev/null in the target's mount namespace"
	}
	return "fell back to close: opening /dev/null in the target failed: " + errText
}

// parseNofileSoft reads the soft "Max open files" of /proc/PID/limits;
// -1 for unlimited.
func parseNofileSoft(data []byte) (int, error) {
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "Max open files")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			break
		}
		if f[0] == "unlimited" {
			return -1, nil
		}
		return strconv.Atoi(f[0])
	}
	return 0, errors.New("no \"Max open files\" line")
}

// hiddenEndsRoom is how many more fds a process with open fds and soft
// limit soft may be given and still keep a reserve free (max(32,
// soft/16)): the hidden ends of hangup and quiet sockets cost one fd per
// released file, and a program left at its limit fails its next accept or
// open.
func hiddenEndsRoom(open, soft int) int {
	if soft < 0 {
		return 1 << 30
	}
	return soft - open - max(32, soft/16)
}

// dedupeFDs drops repeated and negative fd numbers, keeping the order.
func dedupeFDs(fds []int) []int {
	seen := make(map[int]bool, len(fds))
	out := make([]int, 0, len(fds))
	for _, fd := range fds {
		if fd < 0 || seen[fd] {
			continue
		}
		seen[fd] = true
		out = append(out, fd)
	}
	return out
}

// arm64Regs mirrors unix.PtraceRegsArm64 (same fields, so the two convert
// into each other) to keep the arm64 register work testable on any machine.
type arm64Regs struct {
	Regs   [31]uint64
	Sp     uint64
	Pc     uint64
	Pstate uint64
}

// pstateUnset marks Pstate before a read: a compat (AArch32) thread gets the
// shorter 32-bit layout and leaves it untouched.
const pstateUnset = ^uint64(0)

// compat says whether an arm64 register read came from an AArch32 thread:
// the 32-bit layout is shorter (Pstate untouched) or PSR_MODE32_BIT is set.
func (r *arm64Regs) compat() bool {
	return r.Pstate == pstateUnset || r.Pstate&0x10 != 0
}

// prepareSyscall sets up a call of nr at the svc instruction at pc: number
// in x8, arguments in x0..x5. x7 is never used: the kernel clobbers it at
// syscall stops.
func (r *arm64Regs) prepareSyscall(pc, nr uint64, args [6]uint64) {
	r.Pc = pc
	r.Regs[8] = nr
	copy(r.Regs[0:6], args[:])
}

// epollReg is one registration listed in an epoll fd's fdinfo.
type epollReg struct {
	efd    int // the epoll fd, in the target
	tfd    int
	events uint32
	data   uint64
	ino    uint64
	sdev   uint64 // the registered file's device, the kernel's encoding (major<<20 | minor)
	slot   int    // its struct epoll_event in the scratch mapping
}

// parseEpollRegs reads the "tfd:" lines of an epoll fd's fdinfo:
// "tfd:        5 events:       19 data:                5  pos:0 ino:3 sdev:d".
// A line that does not parse is an error: acting on a half-read set of
// registrations would leave one stale.
func parseEpollRegs(efd int, data []byte) ([]epollReg, error) {
	var out []epollReg
	for _, line := range strings.Split(string(data), "\n") {
		rest, ok := strings.CutPrefix(line, "tfd:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 5 || f[1] != "events:" || f[3] != "data:" {
			return nil, fmt.Errorf("bad epoll line %q", line)
		}
		tfd, err := strconv.Atoi(f[0])
		if err != nil || tfd < 0 {
			return nil, fmt.Errorf("bad tfd in %q", line)
		}
		ev, err := strconv.ParseUint(f[2], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("bad events in %q", line)
		}
		d, err := strconv.ParseUint(f[4], 16, 64)
		if err != nil {
			return nil, fmt.Errorf("bad data in %q", line)
		}
		r := epollReg{efd: efd, tfd: tfd, events: uint32(ev), data: d}
		for _, kv := range f[5:] {
			if v, ok := strings.CutPrefix(kv, "ino:"); ok {
				if r.ino, err = strconv.ParseUint(v, 16, 64); err != nil {
					return nil, fmt.Errorf("bad ino in %q", line)
				}
			}
			if v, ok := strings.CutPrefix(kv, "sdev:"); ok {
				if r.sdev, err = strconv.ParseUint(v, 16, 64); err != nil {
					return nil, fmt.Errorf("bad sdev in %q", line)
				}
			}
		}
		out = append(out, r)
	}
	return out, nil
}

// epollEvent encodes a struct epoll_event for the ABI.
func epollEvent(a abi, events uint32, data uint64) []byte {
	b := make([]byte, a.epollEventSize)
	binary.LittleEndian.PutUint32(b, events)
	binary.LittleEndian.PutUint64(b[a.epollEventSize-8:], data)
	return b
}

// fuseOnPath reports whether any mount that the lookup of path crosses in
// a /proc/PID/mountinfo is a FUSE file system: opening path there could
// wait forever on a user's server. A line that does not parse counts as
// FUSE, to be safe.
func fuseOnPath(mountinfo []byte, path string) bool {
	for _, line := range strings.Split(string(mountinfo), "\n") {
		if line == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if !ok || len(f) < 5 || len(g) < 1 {
			return true
		}
		mp := unescapeMount(f[4])
		if mp != "/" && mp != path && !strings.HasPrefix(path, mp+"/") {
			continue
		}
		if fs := g[0]; fs == "fuse" || fs == "fuseblk" || strings.HasPrefix(fs, "fuse.") {
			return true
		}
	}
	return false
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
