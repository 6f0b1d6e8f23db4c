// Package libproc reads the macOS process and file tables through libproc
// (proc_listpids, proc_pidinfo, proc_pidfdinfo) and turns them into a
// snapshot.Snapshot.
//
// The byte decoders and the mapping from decoded structs to the snapshot model
// carry no build tags, so they are tested on every platform with hand-built
// fixture bytes. Only the thin syscall glue (files ending in _darwin.go) needs
// a Mac.
//
// All layouts are LP64 little-endian (arm64 and x86_64 macOS), taken from
// apple-oss-distributions/xnu bsd/sys/proc_info.h, bsd/sys/proc_info_private.h
// and bsd/sys/event_private.h (xnu-11417.101.15).
package libproc

// proc_listpids types.
const (
	procAllPIDs = 1 // PROC_ALL_PIDS
)

// proc_pidinfo flavors (proc_info.h, proc_info_private.h).
const (
	pidListFDs         = 1  // PROC_PIDLISTFDS: array of proc_fdinfo
	pidTBSDInfo        = 3  // PROC_PIDTBSDINFO: proc_bsdinfo
	pidTaskInfo        = 4  // PROC_PIDTASKINFO: proc_taskinfo
	pidThreadInfo      = 5  // PROC_PIDTHREADINFO: proc_threadinfo, arg = thread handle
	pidListThreads     = 6  // PROC_PIDLISTTHREADS: array of uint64 thread handles
	pidListDynKqueues  = 27 // PROC_PIDLISTDYNKQUEUES: array of kqueue_id_t, returns a count
	dynKqueueExtinfo   = 1  // PROC_PIDDYNKQUEUE_EXTINFO for proc_piddynkqueueinfo
	pidPathInfoMaxSize = 4 * 1024
)

// proc_pidfdinfo flavors.
const (
	fdVnodePathInfo = 2 // PROC_PIDFDVNODEPATHINFO: vnode_fdinfowithpath
	fdPipeInfo      = 6 // PROC_PIDFDPIPEINFO: pipe_fdinfo
	fdKqueueExtinfo = 9 // PROC_PIDFDKQUEUE_EXTINFO: array of kevent_extinfo, returns a count
)

// proc_fdinfo.proc_fdtype values (PROX_FDTYPE_*).
const (
	FDTypeVnode  = 1
	FDTypeSocket = 2
	FDTypeKqueue = 5
	FDTypePipe   = 6
)

// Struct sizes. Each was summed field by field from proc_info.h with LP64
// alignment; the decoder tests pin every offset used.
const (
	// struct proc_fdinfo { int32_t proc_fd; uint32_t proc_fdtype; }
	sizeFDInfo = 8
	// struct proc_fileinfo { u32 fi_openflags; u32 fi_status; off_t fi_offset;
	// i32 fi_type; u32 fi_guardflags; }
	sizeFileInfo = 24
	// struct vinfo_stat: ends with uint32_t vst_rdev @116 and int64_t
	// vst_qspare[2] @120.
	sizeVinfoStat = 136
	// struct vnode_info { vinfo_stat vi_stat; int vi_type; int vi_pad;
	// fsid_t vi_fsid; } = 136 + 4 + 4 + 8.
	sizeVnodeInfo = 152
	// MAXPATHLEN
	maxPathLen = 1024
	// struct vnode_fdinfowithpath { proc_fileinfo pfi; vnode_info_path pvip; }
	// = 24 + (152 + 1024).
	sizeVnodeFDInfoWithPath = sizeFileInfo + sizeVnodeInfo + maxPathLen
	// struct proc_bsdinfo: ends with uint64_t pbi_start_tvusec @128.
	sizeBSDInfo = 136
	// struct kevent_extinfo { kevent_qos_s kqext_kev (72); u64 kqext_sdata;
	// int kqext_status; int kqext_sfflags; u64 kqext_reserved[2]; }
	sizeKeventExtinfo = 104
	// struct pipe_info { vinfo_stat pipe_stat; u64 pipe_handle;
	// u64 pipe_peerhandle; int pipe_status; int rfu_1; } = 136 + 24.
	sizePipeInfo = 160
	// struct pipe_fdinfo { proc_fileinfo pfi; pipe_info pipeinfo; }
	sizePipeFDInfo = sizeFileInfo + sizePipeInfo
	// struct proc_taskinfo: 6 x uint64 then 12 x int32.
	sizeTaskInfo = 96
	// struct proc_threadinfo: 2 x uint64, 8 x int32, char pth_name[64].
	sizeThreadInfo = 112
)

// proc_bsdinfo.pbi_flags bits (proc_info.h).
const (
	ProcFlagSystem = 0x1  // PROC_FLAG_SYSTEM
	ProcFlagTraced = 0x2  // PROC_FLAG_TRACED: P_LTRACED
	ProcFlagInExit = 0x4  // PROC_FLAG_INEXIT
	ProcFlagCTTY   = 0x40 // PROC_FLAG_CTTY: the session has a tty vnode
	// ProcFlagControlT is PROC_FLAG_CONTROLT (P_CONTROLT); e_tdev is only
	// filled when it is set.
	ProcFlagControlT = 0x80
)

// noDev is NODEV, what e_tdev holds when there is no controlling terminal.
const noDev = 0xffffffff

// p_stat values (bsd/sys/proc.h), reported in pbi_status.
const (
	statIdle   = 1 // SIDL
	statRun    = 2 // SRUN
	statSleep  = 3 // SSLEEP
	statStop   = 4 // SSTOP
	statZombie = 5 // SZOMB
)

// Thread run states (proc_threadinfo.pth_run_state).
const (
	ThreadRunning         = 1 // TH_STATE_RUNNING
	ThreadStopped         = 2 // TH_STATE_STOPPED
	ThreadWaiting         = 3 // TH_STATE_WAITING
	ThreadUninterruptible = 4 // TH_STATE_UNINTERRUPTIBLE
	ThreadHalted          = 5 // TH_STATE_HALTED
)

// fileglob fg_flag bits as reported in fi_openflags (sys/fcntl.h).
const (
	openRead  = 0x1 // FREAD
	openWrite = 0x2 // FWRITE
)

// pipe_state bits (bsd/sys/pipe.h).
const (
	// pipeWantR is PIPE_WANTR: pipe_read sets it on the read side just before
	// it sleeps for data ("piperd"); a write or close clears it.
	pipeWantR = 0x008
)

// kqueue filters and flags (bsd/sys/event.h, event_private.h).
const (
	evFiltRead      = -1     // EVFILT_READ
	evFiltWrite     = -2     // EVFILT_WRITE
	evAdd           = 0x0001 // EV_ADD
	evEnable        = 0x0004 // EV_ENABLE
	evDisable       = 0x0008 // EV_DISABLE
	evOneshot       = 0x0010 // EV_ONESHOT
	evClear         = 0x0020 // EV_CLEAR
	evDispatch      = 0x0080 // EV_DISPATCH
	evUdataSpecific = 0x0100 // EV_UDATA_SPECIFIC
	knDisabled      = 0x004  // KN_DISABLED
	knDropping      = 0x008  // KN_DROPPING
)

// File type bits of vst_mode (sys/stat.h).
const (
	modeTypeMask = 0o170000 // S_IFMT
	modeChar     = 0o020000 // S_IFCHR
)
