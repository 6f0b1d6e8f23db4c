//go:build linux && arm64

package inject

// The crash-safe engine on arm64 is not built: its restore frame (struct
// rt_sigframe with sigcontext, fpsimd_context, the SVE/SME/TPIDR2/ZA
// records the thread uses, an extra_context when they do not fit, and
// the end record, 16-byte aligned) and its routine are not written or
// tested on real arm64 hardware yet. prepareEngine refuses, so arm64
// keeps the call-by-call path and every release says so (CrashSafe false).
// These stubs are never reached.

type archState struct{ frame []byte }

func (e *engine) archSetup() string {
	return "the crash-safe engine exists for amd64 only (arm64: not built yet); call by call"
}
func (e *engine) routineCode() []byte                        { return nil }
func (e *engine) chainRegs(nr uint64, args [6]uint64) regs   { return e.r.base }
func (e *engine) chainRegsAt(nr uint64, args [6]uint64) regs { return e.r.base }
func (e *engine) routineRegs() regs                          { return e.r.base }
func (e *engine) atPause(cur regs) bool                      { return false }
func (e *engine) pastPause(cur regs) (regs, bool)            { return cur, false }
func (e *engine) pastStuckCall(cur regs) (regs, bool)        { return cur, false }
func (e *engine) inFinalCalls(cur regs) bool                 { return false }
func (e *engine) compareRestored() string                    { return "not built on arm64" }
func (e *engine) putRight() error                            { return nil }
