package inject

// A classic BPF interpreter for the subset seccomp accepts
// (kernel/seccomp.c seccomp_check_filter), to ask a target's own filters
// what they would do with each call the crash-safe routine makes. The
// filter is suspended for us while we trace; if we die mid-release it
// applies again to the calls the routine then makes by itself. No system
// calls here, so it is unit-tested on any machine.

import (
	"encoding/binary"
	"fmt"
)

// bpfInsn is one struct sock_filter.
type bpfInsn struct {
	code   uint16
	jt, jf uint8
	k      uint32
}

// parseBPF splits a filter as PTRACE_SECCOMP_GET_FILTER returns it.
func parseBPF(b []byte) []bpfInsn {
	out := make([]bpfInsn, len(b)/8)
	for i := range out {
		e := b[i*8:]
		out[i] = bpfInsn{code: binary.LittleEndian.Uint16(e), jt: e[2], jf: e[3], k: binary.LittleEndian.Uint32(e[4:])}
	}
	return out
}

// seccompData is the struct seccomp_data a filter reads.
type seccompData struct {
	nr   int32
	arch uint32
	ip   uint64
	args [6]uint64
}

func (d *seccompData) word(off uint32) (uint32, bool) {
	var b [64]byte
	le := binary.LittleEndian
	le.PutUint32(b[0:], uint32(d.nr))
	le.PutUint32(b[4:], d.arch)
	le.PutUint64(b[8:], d.ip)
	for i, a := range d.args {
		le.PutUint64(b[16+8*i:], a)
	}
	if off%4 != 0 || off+4 > 64 {
		return 0, false
	}
	return le.Uint32(b[off:]), true
}

// Seccomp return actions (the top 16 bits of a filter's result).
const (
	seccompRetActionFull = 0xffff0000
	seccompRetAllow      = 0x7fff0000
	seccompRetLog        = 0x7ffc0000
)

// runBPF runs a seccomp filter on d and returns its result.
func runBPF(prog []bpfInsn, d *seccompData) (uint32, error) {
	var a, x uint32
	var mem [16]uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		cls := in.code & 0x07
		switch cls {
		case 0x00, 0x01: // LD, LDX
			var v uint32
			switch in.code &^ 0x07 {
			case 0x20: // W ABS
				w, ok := d.word(in.k)
				if !ok {
					return 0, fmt.Errorf("load at %d outside seccomp_data", in.k)
				}
				v = w
			case 0x80: // W LEN
				v = 64
			case 0x00: // IMM
				v = in.k
			case 0x60: // MEM
				if in.k >= 16 {
					return 0, fmt.Errorf("bad scratch slot %d", in.k)
				}
				v = mem[in.k]
			default:
				return 0, fmt.Errorf("unsupported load %#x", in.code)
			}
			if cls == 0x00 {
				a = v
			} else {
				x = v
			}
		case 0x02, 0x03: // ST, STX
			if in.k >= 16 {
				return 0, fmt.Errorf("bad scratch slot %d", in.k)
			}
			if cls == 0x02 {
				mem[in.k] = a
			} else {
				mem[in.k] = x
			}
		case 0x04: // ALU
			src := in.k
			if in.code&0x08 != 0 {
				src = x
			}
			switch in.code & 0xf0 {
			case 0x00:
				a += src
			case 0x10:
				a -= src
			case 0x20:
				a *= src
			case 0x30:
				if src == 0 {
					return 0, nil // the kernel's BPF ends with 0: kill
				}
				a /= src
			case 0x40:
				a |= src
			case 0x50:
				a &= src
			case 0x60:
				a <<= src & 31
			case 0x70:
				a >>= src & 31
			case 0x80:
				a = -a
			case 0x90:
				if src == 0 {
					return 0, nil
				}
				a %= src
			case 0xa0:
				a ^= src
			default:
				return 0, fmt.Errorf("unsupported ALU op %#x", in.code)
			}
		case 0x05: // JMP
			src := in.k
			if in.code&0x08 != 0 {
				src = x
			}
			var take bool
			switch in.code & 0xf0 {
			case 0x00: // JA
				pc += int(in.k)
				continue
			case 0x10:
				take = a == src
			case 0x20:
				take = a > src
			case 0x30:
				take = a >= src
			case 0x40:
				take = a&src != 0
			default:
				return 0, fmt.Errorf("unsupported jump %#x", in.code)
			}
			if take {
				pc += int(in.jt)
			} else {
				pc += int(in.jf)
			}
		case 0x06: // RET
			switch in.code & 0x18 {
			case 0x00:
				return in.k, nil
			case 0x10:
				return a, nil
			}
			return 0, fmt.Errorf("unsupported return %#x", in.code)
		case 0x07: // MISC
			switch in.code & 0xf8 {
			case 0x00:
				x = a
			case 0x80:
				a = x
			default:
				return 0, fmt.Errorf("unsupported misc op %#x", in.code)
			}
		}
	}
	return 0, fmt.Errorf("filter ran off its end")
}

// filtersAllow says whether every filter lets the call through (allow or
// log); otherwise why not.
func filtersAllow(filters [][]bpfInsn, d *seccompData) (bool, string) {
	for i, f := range filters {
		ret, err := runBPF(f, d)
		if err != nil {
			return false, fmt.Sprintf("filter %d cannot be evaluated: %v", i, err)
		}
		if act := ret & seccompRetActionFull; act != seccompRetAllow && act != seccompRetLog {
			return false, fmt.Sprintf("filter %d answers %#x", i, ret)
		}
	}
	return true, ""
}
