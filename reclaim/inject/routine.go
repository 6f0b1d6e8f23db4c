package inject

// The op table the crash-safe routine runs inside a target, as plain data
// (testdata/routine_amd64.S says what each field means to the routine). No
// system calls here, so it is unit-tested on any machine.

import (
	"encoding/binary"
	"encoding/hex"
)

// Scratch mapping layout: page 0 is the routine's code (made R-X), page 1
// starts with the header, then tables and data.
const (
	scrCode   = 0
	scrHeader = pageSize
	// Header fields, from the header's start.
	hdrDone     = 0  // written by the routine: the pause op's address, or doneEnd
	hdrAbort    = 8  // written by the tracer: skip every op but cleanup ones
	hdrTimeout  = 16 // struct timespec: how long a pause waits for the tracer
	hdrTimeVar  = 32 // the copy pselect6 may change
	hdrFrame    = 48 // rsp for the final "syscall; ret": the restore frame
	hdrGadget   = 56 // address of a "syscall; ret" in the target's code
	hdrBase     = 64 // the mapping, for the final munmap
	hdrSize     = 72
	hdrTable    = 80 // the first op
	hdrProgress = 88 // the op being run, for the tracer
	hdrLen      = 128
	// The routine's stack pointer: it pushes nothing, but a valid rsp
	// costs nothing. Just below the header.
	scrStackTop = scrHeader - 64
)

// Syscall numbers and constants the engine adds to the ABI tables
// (x86-64; the routine exists for it only).
const (
	sysMprotectAMD64    = 10
	sysRtSigreturnAMD64 = 15
	sysFcntlAMD64       = 72
	sysPselect6AMD64    = 270
	protRX              = 0x5
	auditArchX86_64     = 0xc000003e
	fGETFD              = 1
)

// doneEnd is the done word once the routine runs its end op.
const doneEnd = 1

// Ops and flags of the table.
const (
	opSyscall = 0
	opPause   = 1
	opJump    = 2
	opScan    = 3
	opEnd     = 4

	flagCloexec  = 1 << 6 // OR O_CLOEXEC into arg2 if arg1 has FD_CLOEXEC
	flagCleanup  = 1 << 7 // runs even after an abort
	flagIfOK     = 1 << 8 // runs only if the guard op succeeded
	flagIfFailed = 1 << 9 // runs only if the guard op did not succeed

	opSize    = 80
	opResult  = 64
	resNotRun = uint64(0x7fff_ffff_ffff_fff1) // never a syscall's return
	// resSkipped marks an op the routine skipped. Negative as an int64
	// (a failure to guards) and in its low 32 bits, which indirect
	// arguments read: an fd slot of a skipped call is never a valid fd.
	resSkipped = uint64(0x8000_0000_ffff_fff0)
)

// rop is one op of the table.
type rop struct {
	op    uint8
	nr    uint32
	flags uint16
	guard uint64 // address of the guarding op's result
	args  [6]uint64
}

// indirect marks argument i as the address of an int32 to pass instead.
func indirect(i int) uint16 { return 1 << i }

// opTable is a list of ops to be written at base.
type opTable struct {
	base uint64
	ops  []rop
}

func (t *opTable) add(o rop) int {
	t.ops = append(t.ops, o)
	return len(t.ops) - 1
}

func (t *opTable) addr(i int) uint64 { return t.base + uint64(i)*opSize }

// result is the address of op i's result (an int64; its low 32 bits are
// an fd for indirect arguments of later ops).
func (t *opTable) result(i int) uint64 { return t.addr(i) + opResult }

func (t *opTable) size() int { return len(t.ops) * opSize }

func (t *opTable) encode() []byte {
	le := binary.LittleEndian
	b := make([]byte, t.size())
	for i, o := range t.ops {
		e := b[i*opSize:]
		le.PutUint32(e[0:], o.nr)
		le.PutUint16(e[4:], o.flags)
		e[6] = o.op
		le.PutUint64(e[8:], o.guard)
		for k, a := range o.args {
			le.PutUint64(e[16+8*k:], a)
		}
		le.PutUint64(e[opResult:], resNotRun)
	}
	return b
}

// decodeResults reads the result of each of n ops from a table's bytes.
func decodeResults(b []byte, n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = binary.LittleEndian.Uint64(b[i*opSize+opResult:])
	}
	return out
}

// resultOK is what the routine's guards call a success.
func resultOK(raw uint64) bool { return raw != resNotRun && int64(raw) >= 0 }

// arena hands out data space in the scratch mapping.
type arena struct {
	next, end uint64
}

// take returns the address of n bytes aligned to 8, or false when full.
func (a *arena) take(n int) (uint64, bool) {
	at := (a.next + 7) &^ 7
	if at+uint64(n) > a.end {
		return 0, false
	}
	a.next = at + uint64(n)
	return at, true
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// encodeHeader fills the header the routine reads.
func encodeHeader(timeoutNs int64, frame, gadget, base, size, table uint64) []byte {
	le := binary.LittleEndian
	h := make([]byte, hdrLen)
	le.PutUint64(h[hdrTimeout:], uint64(timeoutNs/1e9))
	le.PutUint64(h[hdrTimeout+8:], uint64(timeoutNs%1e9))
	le.PutUint64(h[hdrFrame:], frame)
	le.PutUint64(h[hdrGadget:], gadget)
	le.PutUint64(h[hdrBase:], base)
	le.PutUint64(h[hdrSize:], size)
	le.PutUint64(h[hdrTable:], table)
	return h
}

// scratchSize bounds the mapping for nfds fds: code, header, phase A (the
// probe list), phase B (ops and data for every fd and up to two epoll
// registrations per fd).
func scratchSize(nfds, fdsize int) (opsB, size int) {
	// Per released file at most: its socket pair and shutdown, the close
	// of its temporary end (hangup and quiet make one each), a dup3 or
	// close and a fallback close per fd, and a DEL and ADD per
	// registration.
	opsB = 32 + 4*nfds + 2*(2*nfds+16)
	dataB := 64 + 8*nfds + 16*(2*nfds+16) + 64*8
	size = scrHeader + hdrLen + 16*opSize + 5*fdsize + 64 + opsB*opSize + dataB + 4096
	return opsB, (size + pageSize - 1) &^ (pageSize - 1)
}
