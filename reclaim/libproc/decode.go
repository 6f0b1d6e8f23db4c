package libproc

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// le is the byte order of every supported Mac (arm64, x86_64).
var le = binary.LittleEndian

// ShortError reports a buffer too small for the struct it should hold.
type ShortError struct {
	Struct string
	Got    int
	Want   int
}

func (e *ShortError) Error() string {
	return fmt.Sprintf("libproc: %s: short buffer: got %d bytes, want %d", e.Struct, e.Got, e.Want)
}

func checkLen(name string, b []byte, want int) error {
	if len(b) < want {
		return &ShortError{Struct: name, Got: len(b), Want: want}
	}
	return nil
}

// cString returns the bytes of b up to the first NUL (all of b if none).
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// FDInfo is one struct proc_fdinfo.
type FDInfo struct {
	FD   int32
	Type uint32 // PROX_FDTYPE_*
}

// DecodeFDInfos decodes the proc_fdinfo array PROC_PIDLISTFDS returns. A
// trailing partial entry is ignored: the kernel only writes whole entries.
func DecodeFDInfos(b []byte) []FDInfo {
	n := len(b) / sizeFDInfo
	out := make([]FDInfo, 0, n)
	for i := range n {
		e := b[i*sizeFDInfo:]
		out = append(out, FDInfo{
			FD:   int32(le.Uint32(e[0:])), // int32_t proc_fd @0
			Type: le.Uint32(e[4:]),        // uint32_t proc_fdtype @4
		})
	}
	return out
}

// DecodePIDs decodes the int array proc_listpids returns, dropping the zero
// padding the kernel leaves when fewer processes exist than it sized for.
func DecodePIDs(b []byte) []int {
	n := len(b) / 4
	out := make([]int, 0, n)
	for i := range n {
		if pid := int32(le.Uint32(b[i*4:])); pid > 0 {
			out = append(out, int(pid))
		}
	}
	return out
}

// DecodeThreadList decodes the uint64 thread handles PROC_PIDLISTTHREADS
// returns.
func DecodeThreadList(b []byte) []uint64 {
	n := len(b) / 8
	out := make([]uint64, 0, n)
	for i := range n {
		out = append(out, le.Uint64(b[i*8:]))
	}
	return out
}

// FileInfo is struct proc_fileinfo, the head of every proc_pidfdinfo answer.
type FileInfo struct {
	OpenFlags  uint32 // fg_flag: FREAD 0x1, FWRITE 0x2, ...
	Status     uint32
	Offset     int64
	Type       int32
	GuardFlags uint32
}

func decodeFileInfo(b []byte) FileInfo {
	return FileInfo{
		OpenFlags:  le.Uint32(b[0:]),         // fi_openflags @0
		Status:     le.Uint32(b[4:]),         // fi_status @4
		Offset:     int64(le.Uint64(b[8:])),  // off_t fi_offset @8
		Type:       int32(le.Uint32(b[16:])), // fi_type @16
		GuardFlags: le.Uint32(b[20:]),        // fi_guardflags @20
	}
}

// VinfoStat is the part of struct vinfo_stat this package uses.
type VinfoStat struct {
	Dev       uint32
	Mode      uint16
	Nlink     uint16
	Ino       uint64
	UID       uint32
	GID       uint32
	Atime     int64
	AtimeNsec int64
	Mtime     int64
	MtimeNsec int64
	Ctime     int64
	CtimeNsec int64
	Size      int64
	Rdev      uint32
}

func decodeVinfoStat(b []byte) VinfoStat {
	return VinfoStat{
		Dev:       le.Uint32(b[0:]),         // vst_dev @0
		Mode:      le.Uint16(b[4:]),         // vst_mode @4
		Nlink:     le.Uint16(b[6:]),         // vst_nlink @6
		Ino:       le.Uint64(b[8:]),         // vst_ino @8
		UID:       le.Uint32(b[16:]),        // vst_uid @16
		GID:       le.Uint32(b[20:]),        // vst_gid @20
		Atime:     int64(le.Uint64(b[24:])), // vst_atime @24
		AtimeNsec: int64(le.Uint64(b[32:])), // vst_atimensec @32
		Mtime:     int64(le.Uint64(b[40:])), // vst_mtime @40
		MtimeNsec: int64(le.Uint64(b[48:])), // vst_mtimensec @48
		Ctime:     int64(le.Uint64(b[56:])), // vst_ctime @56
		CtimeNsec: int64(le.Uint64(b[64:])), // vst_ctimensec @64
		Size:      int64(le.Uint64(b[88:])), // off_t vst_size @88
		Rdev:      le.Uint32(b[116:]),       // vst_rdev @116
	}
}

// IsCharDevice reports whether the mode is S_IFCHR.
func (s VinfoStat) IsCharDevice() bool { return s.Mode&modeTypeMask == modeChar }

// VnodeFD is struct vnode_fdinfowithpath (PROC_PIDFDVNODEPATHINFO).
type VnodeFD struct {
	File  FileInfo
	Stat  VinfoStat
	VType int32 // vi_type (enum vtype: VCHR = 4)
	Path  string
}

// DecodeVnodeFDInfoWithPath decodes struct vnode_fdinfowithpath.
func DecodeVnodeFDInfoWithPath(b []byte) (VnodeFD, error) {
	if err := checkLen("vnode_fdinfowithpath", b, sizeVnodeFDInfoWithPath); err != nil {
		return VnodeFD{}, err
	}
	// pfi @0 (24), pvip.vip_vi @24: vi_stat @24, vi_type @160, vi_pad @164,
	// vi_fsid @168; pvip.vip_path[MAXPATHLEN] @176.
	const vi = sizeFileInfo
	const path = sizeFileInfo + sizeVnodeInfo
	return VnodeFD{
		File:  decodeFileInfo(b[0:]),
		Stat:  decodeVinfoStat(b[vi:]),
		VType: int32(le.Uint32(b[vi+sizeVinfoStat:])),
		Path:  cString(b[path : path+maxPathLen]),
	}, nil
}

// BSDInfo is the part of struct proc_bsdinfo (PROC_PIDTBSDINFO) this package
// uses.
type BSDInfo struct {
	Flags     uint32 // PROC_FLAG_*
	Status    uint32 // p_stat: SIDL 1, SRUN 2, SSLEEP 3, SSTOP 4, SZOMB 5
	PID       uint32
	PPID      uint32
	UID       uint32
	Comm      string // pbi_comm[MAXCOMLEN], 15 chars and NUL
	Name      string // pbi_name[2*MAXCOMLEN], empty if none registered
	NFiles    uint32
	PGID      uint32
	TDev      uint32 // e_tdev: controlling tty dev_t, NODEV (0xffffffff) if none
	TPGID     uint32
	StartSec  uint64
	StartUsec uint64
}

// DecodeBSDInfo decodes struct proc_bsdinfo.
func DecodeBSDInfo(b []byte) (BSDInfo, error) {
	if err := checkLen("proc_bsdinfo", b, sizeBSDInfo); err != nil {
		return BSDInfo{}, err
	}
	return BSDInfo{
		Flags:     le.Uint32(b[0:]),   // pbi_flags @0
		Status:    le.Uint32(b[4:]),   // pbi_status @4
		PID:       le.Uint32(b[12:]),  // pbi_pid @12 (pbi_xstatus @8)
		PPID:      le.Uint32(b[16:]),  // pbi_ppid @16
		UID:       le.Uint32(b[20:]),  // pbi_uid @20
		Comm:      cString(b[48:64]),  // pbi_comm[16] @48 (after 7 ids and rfu_1)
		Name:      cString(b[64:96]),  // pbi_name[32] @64
		NFiles:    le.Uint32(b[96:]),  // pbi_nfiles @96
		PGID:      le.Uint32(b[100:]), // pbi_pgid @100 (pbi_pjobc @104)
		TDev:      le.Uint32(b[108:]), // e_tdev @108
		TPGID:     le.Uint32(b[112:]), // e_tpgid @112 (pbi_nice @116)
		StartSec:  le.Uint64(b[120:]), // pbi_start_tvsec @120
		StartUsec: le.Uint64(b[128:]), // pbi_start_tvusec @128
	}, nil
}

// Knote is the part of struct kevent_extinfo this package uses.
type Knote struct {
	Ident  uint64
	Filter int16
	Flags  uint16 // EV_* as registered
	Status uint32 // kn_status: KN_DISABLED 0x4, KN_DROPPING 0x8, ...
	// UData is the owner's opaque value (libuv: none; libevent, Go:
	// pointers), SFFlags and SData the filter flags and data as
	// registered (NOTE_LOWAT and its threshold): what a registration of
	// a replacement must carry to look the same to the owner.
	UData   uint64
	SFFlags uint32
	SData   int64
}

// ReAddFlags are the EV_* flags that register another file exactly as
// this knote: EV_ADD, the knote's own delivery flags (EV_ONESHOT,
// EV_CLEAR, EV_DISPATCH, EV_UDATA_SPECIFIC), and EV_DISABLE when it is
// disabled (by its owner or by EV_DISPATCH after a delivery: its owner
// re-enables it), else EV_ENABLE.
func (k Knote) ReAddFlags() uint16 {
	f := evAdd | k.Flags&(evOneshot|evClear|evDispatch|evUdataSpecific)
	if k.Status&knDisabled != 0 {
		return f | evDisable
	}
	return f | evEnable
}

// Live reports whether the knote is registered and would still deliver
// events. A knote disabled by EV_DISPATCH after delivery counts as live: its
// owner re-enables it once it has handled the event (libdispatch does this).
func (k Knote) Live() bool {
	if k.Status&knDropping != 0 {
		return false
	}
	if k.Status&knDisabled == 0 {
		return true
	}
	dispatchDisabled := k.Flags&(evDispatch|evDisable) == evDispatch
	return dispatchDisabled
}

// WatchesFD reports whether the knote is a live read or write watch on fd.
func (k Knote) WatchesFD(fd int) bool {
	if fd < 0 || k.Ident != uint64(fd) {
		return false
	}
	if k.Filter != evFiltRead && k.Filter != evFiltWrite {
		return false
	}
	return k.Live()
}

// DecodeKeventExtinfo decodes the kevent_extinfo array
// PROC_PIDFDKQUEUE_EXTINFO writes. A trailing partial entry is ignored.
func DecodeKeventExtinfo(b []byte) []Knote {
	n := len(b) / sizeKeventExtinfo
	out := make([]Knote, 0, n)
	for i := range n {
		e := b[i*sizeKeventExtinfo:]
		out = append(out, Knote{
			Ident:   le.Uint64(e[0:]),         // kqext_kev.ident @0
			Filter:  int16(le.Uint16(e[8:])),  // kqext_kev.filter @8
			Flags:   le.Uint16(e[10:]),        // kqext_kev.flags @10
			UData:   le.Uint64(e[16:]),        // kqext_kev.udata @16
			Status:  le.Uint32(e[80:]),        // kqext_status @80 (after kev 72, kqext_sdata @72)
			SData:   int64(le.Uint64(e[72:])), // kqext_sdata @72
			SFFlags: le.Uint32(e[84:]),        // kqext_sfflags @84
		})
	}
	return out
}

// PipeFD is struct pipe_fdinfo (PROC_PIDFDPIPEINFO).
//
// Pipes have no inode on macOS (fill_pipeinfo leaves vst_ino 0): the pipe is
// named by Handle, a hash of the kernel address of this end's struct pipe;
// PeerHandle names the other end.
type PipeFD struct {
	File       FileInfo
	Handle     uint64
	PeerHandle uint64
	Status     int32 // pipe_state: PIPE_WANTR 0x8, ...
}

// Reads reports whether the fd was opened for reading (FREAD).
func (p PipeFD) Reads() bool { return p.File.OpenFlags&openRead != 0 }

// Writes reports whether the fd was opened for writing (FWRITE).
func (p PipeFD) Writes() bool { return p.File.OpenFlags&openWrite != 0 }

// ReaderWaiting reports PIPE_WANTR: a thread sleeps in read() on this end.
func (p PipeFD) ReaderWaiting() bool { return p.Status&pipeWantR != 0 }

// DecodePipeFDInfo decodes struct pipe_fdinfo.
func DecodePipeFDInfo(b []byte) (PipeFD, error) {
	if err := checkLen("pipe_fdinfo", b, sizePipeFDInfo); err != nil {
		return PipeFD{}, err
	}
	// pfi @0 (24); pipeinfo @24: pipe_stat (136) @24, pipe_handle @160,
	// pipe_peerhandle @168, pipe_status @176, rfu_1 @180.
	const pi = sizeFileInfo + sizeVinfoStat
	return PipeFD{
		File:       decodeFileInfo(b[0:]),
		Handle:     le.Uint64(b[pi:]),
		PeerHandle: le.Uint64(b[pi+8:]),
		Status:     int32(le.Uint32(b[pi+16:])),
	}, nil
}

// TaskInfo is the part of struct proc_taskinfo this package uses.
type TaskInfo struct {
	Threads int32 // pti_threadnum
	Running int32 // pti_numrunning
}

// DecodeTaskInfo decodes struct proc_taskinfo (PROC_PIDTASKINFO).
func DecodeTaskInfo(b []byte) (TaskInfo, error) {
	if err := checkLen("proc_taskinfo", b, sizeTaskInfo); err != nil {
		return TaskInfo{}, err
	}
	// Six uint64 (48 bytes), then int32 pti_policy @48, pti_faults @52,
	// pti_pageins @56, pti_cow_faults @60, pti_messages_sent @64,
	// pti_messages_received @68, pti_syscalls_mach @72, pti_syscalls_unix @76,
	// pti_csw @80, pti_threadnum @84, pti_numrunning @88, pti_priority @92.
	return TaskInfo{
		Threads: int32(le.Uint32(b[84:])),
		Running: int32(le.Uint32(b[88:])),
	}, nil
}

// ThreadInfo is the part of struct proc_threadinfo this package uses.
type ThreadInfo struct {
	RunState  int32 // TH_STATE_*
	Flags     int32
	SleepTime int32 // seconds
	Name      string
}

// DecodeThreadInfo decodes struct proc_threadinfo (PROC_PIDTHREADINFO).
func DecodeThreadInfo(b []byte) (ThreadInfo, error) {
	if err := checkLen("proc_threadinfo", b, sizeThreadInfo); err != nil {
		return ThreadInfo{}, err
	}
	// pth_user_time @0, pth_system_time @8, pth_cpu_usage @16, pth_policy @20,
	// pth_run_state @24, pth_flags @28, pth_sleep_time @32, pth_curpri @36,
	// pth_priority @40, pth_maxpriority @44, pth_name[64] @48.
	return ThreadInfo{
		RunState:  int32(le.Uint32(b[24:])),
		Flags:     int32(le.Uint32(b[28:])),
		SleepTime: int32(le.Uint32(b[32:])),
		Name:      cString(b[48:112]),
	}, nil
}

// Major returns the major number of a Darwin dev_t (major = dev >> 24).
func Major(dev uint32) uint32 { return dev >> 24 }

// Minor returns the minor number of a Darwin dev_t (minor = dev & 0xffffff).
func Minor(dev uint32) uint32 { return dev & 0xffffff }

// Makedev builds a Darwin dev_t.
func Makedev(major, minor uint32) uint32 { return major<<24 | minor&0xffffff }
