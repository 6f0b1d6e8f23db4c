//go:build linux && amd64

package inject

import (
	"encoding/binary"
	"errors"
)

// cpuid runs the CPUID instruction (cpuid_linux_amd64.s).
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// xsaveComponent returns the standard-format offset and size of xsave
// component i (CPUID leaf 0xD, sub-leaf i): the same for every process on
// the machine, so ours serve for the target.
func xsaveComponent(i int) (off, size uint32) {
	eax, ebx, _, _ := cpuid(0xd, uint32(i))
	return ebx, eax
}

// threadXsaveLayout is the xsave area rt_sigreturn accepts for a thread
// whose NT_X86_XSTATE regset is xstate.
func threadXsaveLayout(xstate []byte) (xsaveLayout, error) {
	if len(xstate) < xsaveMin {
		return xsaveLayout{}, errors.New("the xsave state is too short")
	}
	return sigframeLayout(binary.LittleEndian.Uint64(xstate[x86XCR0Word:]), xsaveComponent)
}
