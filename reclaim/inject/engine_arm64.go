//go:build linux && arm64

package inject

// runEngine on arm64: the restore frame (sigcontext, fpsimd_context, sve
// and extra records, end record, 16-byte aligned) is not built yet, so
// arm64 keeps the call-by-call path and says so.
func (r *run) runEngine(fds []int, v *verification) (handled bool, err error) {
	r.rep.CrashSafe = false
	r.rep.CrashSafeReason = "arm64: the crash-safe engine is not implemented yet; call by call"
	return false, nil
}

func (r *run) hook(point string) {
	if r.t.hook != nil {
		r.t.hook(point)
	}
}
