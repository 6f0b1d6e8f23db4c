package libproc

// Code signing status flags, as csops(pid, CS_OPS_STATUS, &flags, 4) returns
// them (xnu osfmk/kern/cs_blobs.h; CS_OPS_STATUS = 0 in bsd/sys/codesign.h).
const (
	csOpsStatus       = 0          // CS_OPS_STATUS
	CSValid           = 0x00000001 // CS_VALID
	CSGetTaskAllow    = 0x00000004 // CS_GET_TASK_ALLOW: has get-task-allow
	CSHard            = 0x00000100 // CS_HARD: don't load invalid pages
	CSKill            = 0x00000200 // CS_KILL: kill the process if it becomes invalid
	CSRestrict        = 0x00000800 // CS_RESTRICT
	CSRuntime         = 0x00010000 // CS_RUNTIME: hardened runtime
	CSPlatformBinary  = 0x04000000 // CS_PLATFORM_BINARY
	CSDebugged        = 0x10000000 // CS_DEBUGGED
	CSSigned          = 0x20000000 // CS_SIGNED
	reasonHardened    = "hardened runtime: in-place reclaim refused"
	reasonPlatform    = "platform binary: in-place reclaim refused"
	reasonNotRoot     = "not root: task_for_pid needs root"
	reasonGetTask     = "get-task-allow entitlement: in-place reclaim possible"
	reasonNotHardened = "no hardened runtime: in-place reclaim possible"
)

// DecideInPlace decides from a process's code signing flags whether root may
// get its task port and so reclaim fds inside it.
//
// With SIP on, AMFI refuses task_for_pid even to root for platform binaries
// and for hardened-runtime programs without get-task-allow (Claude.app,
// VS Code, iTerm2 are such). The kernel's own posix check
// (task_for_pid_posix_check in bsd/kern/kern_proc.c) lets root through, so
// everything else is possible. A machine with SIP debugging restrictions off
// would also allow the refused cases; that is not probed, so the answer errs
// towards "refused".
//
// CS_HARD and CS_KILL do not block task_for_pid, but a process with them is
// killed if it maps a page whose signature is invalid: a reclaim must run code
// already in the process (libsystem's close/dup2), never write new code.
func DecideInPlace(flags uint32, isRoot bool) (bool, string) {
	if !isRoot {
		return false, reasonNotRoot
	}
	if flags&CSPlatformBinary != 0 {
		return false, reasonPlatform
	}
	if flags&CSGetTaskAllow != 0 {
		return true, reasonGetTask
	}
	if flags&CSRuntime != 0 {
		return false, reasonHardened
	}
	return true, reasonNotHardened
}
