package libproc

import (
	"encoding/binary"
	"errors"
	"syscall"
	"testing"

	"github.com/ptyreclaim/ptyreclaim/reclaim/snapshot"
)

// fixture builds little-endian struct bytes at offsets read off xnu's
// bsd/sys/proc_info.h (xnu-11417.101.15). Every offset below was summed by
// hand from the header; the decoder must agree.
type fixture []byte

func newFixture(size int) fixture { return make(fixture, size) }

func (f fixture) u16(off int, v uint16) fixture { binary.LittleEndian.PutUint16(f[off:], v); return f }
func (f fixture) u32(off int, v uint32) fixture { binary.LittleEndian.PutUint32(f[off:], v); return f }
func (f fixture) u64(off int, v uint64) fixture { binary.LittleEndian.PutUint64(f[off:], v); return f }
func (f fixture) str(off int, s string) fixture { copy(f[off:], s); return f }

func TestStructSizes(t *testing.T) {
	// Sizes summed from proc_info.h; the kernel returns exactly these.
	cases := []struct {
		name      string
		got, want int
	}{
		{"proc_fdinfo", sizeFDInfo, 8},
		{"proc_fileinfo", sizeFileInfo, 24},
		{"vinfo_stat", sizeVinfoStat, 136},
		{"vnode_info", sizeVnodeInfo, 152},
		{"vnode_fdinfowithpath", sizeVnodeFDInfoWithPath, 1200},
		{"proc_bsdinfo", sizeBSDInfo, 136},
		{"kevent_extinfo", sizeKeventExtinfo, 104},
		{"pipe_info", sizePipeInfo, 160},
		{"pipe_fdinfo", sizePipeFDInfo, 184},
		{"proc_taskinfo", sizeTaskInfo, 96},
		{"proc_threadinfo", sizeThreadInfo, 112},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: size %d, want %d", c.name, c.got, c.want)
		}
	}
}

// struct proc_fdinfo { int32_t proc_fd; uint32_t proc_fdtype; };
func TestDecodeFDInfos(t *testing.T) {
	b := newFixture(3*8+5). // 5 trailing bytes: a partial entry, ignored
				u32(0, 3).u32(4, FDTypeVnode).
				u32(8, 0xffffffff).u32(12, FDTypeKqueue). // fd -1 decodes as negative
				u32(16, 12).u32(20, FDTypePipe)
	got := DecodeFDInfos(b)
	want := []FDInfo{{3, FDTypeVnode}, {-1, FDTypeKqueue}, {12, FDTypePipe}}
	if len(got) != len(want) {
		t.Fatalf("got %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := DecodeFDInfos(nil); len(got) != 0 {
		t.Errorf("nil: got %v", got)
	}
	if got := DecodeFDInfos(make([]byte, 7)); len(got) != 0 {
		t.Errorf("7 bytes: got %v", got)
	}
}

func TestDecodePIDs(t *testing.T) {
	b := newFixture(16).u32(0, 1).u32(4, 501).u32(8, 0).u32(12, 0xfffffffe)
	got := DecodePIDs(b)
	if len(got) != 2 || got[0] != 1 || got[1] != 501 {
		t.Errorf("got %v, want [1 501] (zero padding and negatives dropped)", got)
	}
}

func TestDecodeThreadList(t *testing.T) {
	b := newFixture(20).u64(0, 0xdead).u64(8, 0xbeef)
	got := DecodeThreadList(b)
	if len(got) != 2 || got[0] != 0xdead || got[1] != 0xbeef {
		t.Errorf("got %#v", got)
	}
}

// vnodeFixture is a struct vnode_fdinfowithpath:
//
//	struct vnode_fdinfowithpath { struct proc_fileinfo pfi; struct vnode_info_path pvip; };
//	struct vnode_info_path { struct vnode_info vip_vi; char vip_path[MAXPATHLEN]; };
//	struct vnode_info { struct vinfo_stat vi_stat; int vi_type; int vi_pad; fsid_t vi_fsid; };
//
// so pfi @0, vi_stat @24 (its field offsets + 24), vi_type @160, path @176.
func vnodeFixture() fixture {
	return newFixture(1200).
		u32(0, 0x3).                     // fi_openflags @0: FREAD|FWRITE
		u32(4, 0x2).                     // fi_status @4
		u64(8, 77).                      // off_t fi_offset @8
		u32(16, 1).                      // fi_type @16 (DTYPE_VNODE)
		u32(20, 0x5).                    // fi_guardflags @20
		u32(24+0, 0x03000001).           // uint32_t vst_dev @0
		u16(24+4, 0o020666).             // uint16_t vst_mode @4: S_IFCHR|0666
		u16(24+6, 1).                    // uint16_t vst_nlink @6
		u64(24+8, 305).                  // uint64_t vst_ino @8
		u32(24+16, 0).                   // uid_t vst_uid @16
		u32(24+20, 4).                   // gid_t vst_gid @20
		u64(24+24, 1700000001).          // int64_t vst_atime @24
		u64(24+32, 11).                  // vst_atimensec @32
		u64(24+40, 1700000002).          // int64_t vst_mtime @40
		u64(24+48, 22).                  // vst_mtimensec @48
		u64(24+56, 1700000003).          // int64_t vst_ctime @56
		u64(24+64, 33).                  // vst_ctimensec @64
		u64(24+88, 4096).                // off_t vst_size @88
		u32(24+116, Makedev(15, 16)).    // uint32_t vst_rdev @116
		u32(160, 4).                     // int vi_type @136 of vnode_info: VCHR
		str(176, "/dev/ptmx\x00garbage") // char vip_path[1024] @152 of vnode_info_path
}

func TestDecodeVnodeFDInfoWithPath(t *testing.T) {
	v, err := DecodeVnodeFDInfoWithPath(vnodeFixture())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"openflags", v.File.OpenFlags, uint32(3)},
		{"status", v.File.Status, uint32(2)},
		{"offset", v.File.Offset, int64(77)},
		{"fi_type", v.File.Type, int32(1)},
		{"guardflags", v.File.GuardFlags, uint32(5)},
		{"dev", v.Stat.Dev, uint32(0x03000001)},
		{"mode", v.Stat.Mode, uint16(0o020666)},
		{"nlink", v.Stat.Nlink, uint16(1)},
		{"ino", v.Stat.Ino, uint64(305)},
		{"gid", v.Stat.GID, uint32(4)},
		{"atime", v.Stat.Atime, int64(1700000001)},
		{"atimensec", v.Stat.AtimeNsec, int64(11)},
		{"mtime", v.Stat.Mtime, int64(1700000002)},
		{"mtimensec", v.Stat.MtimeNsec, int64(22)},
		{"ctime", v.Stat.Ctime, int64(1700000003)},
		{"ctimensec", v.Stat.CtimeNsec, int64(33)},
		{"size", v.Stat.Size, int64(4096)},
		{"rdev", v.Stat.Rdev, Makedev(15, 16)},
		{"vi_type", v.VType, int32(4)},
		{"path", v.Path, "/dev/ptmx"},
		{"chr", v.Stat.IsCharDevice(), true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestDecodeVnodePathUnterminated(t *testing.T) {
	b := vnodeFixture()
	for i := 176; i < 1200; i++ {
		b[i] = 'a'
	}
	v, err := DecodeVnodeFDInfoWithPath(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Path) != 1024 {
		t.Errorf("path length %d, want the whole 1024-byte field", len(v.Path))
	}
}

// bsdFixture is a struct proc_bsdinfo: pbi_flags @0, pbi_status @4,
// pbi_xstatus @8, pbi_pid @12, pbi_ppid @16, pbi_uid @20, pbi_gid @24,
// pbi_ruid @28, pbi_rgid @32, pbi_svuid @36, pbi_svgid @40, rfu_1 @44,
// pbi_comm[16] @48, pbi_name[32] @64, pbi_nfiles @96, pbi_pgid @100,
// pbi_pjobc @104, e_tdev @108, e_tpgid @112, pbi_nice @116,
// pbi_start_tvsec @120, pbi_start_tvusec @128; size 136.
func bsdFixture() fixture {
	return newFixture(136).
		u32(0, ProcFlagCTTY|ProcFlagControlT|ProcFlagTraced).
		u32(4, statSleep).
		u32(8, 0xeeee). // xstatus must not leak into pid
		u32(12, 4242).
		u32(16, 1).
		u32(20, 501).
		u32(24, 20).
		str(48, "Claude Helper (").          // 15 chars + NUL
		str(64, "Claude Helper (Renderer)"). // up to 31 chars
		u32(96, 512).                        // nfiles
		u32(100, 4240).                      // pgid
		u32(104, 0xaaaa).                    // pjobc
		u32(108, Makedev(16, 3)).            // e_tdev
		u32(112, 4241).                      // e_tpgid
		u32(116, 0xfffffffb).                // nice -5
		u64(120, 1712345678).                // start sec
		u64(128, 654321)                     // start usec
}

func TestDecodeBSDInfo(t *testing.T) {
	b, err := DecodeBSDInfo(bsdFixture())
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		field     string
		got, want any
	}{
		{"flags", b.Flags, uint32(ProcFlagCTTY | ProcFlagControlT | ProcFlagTraced)},
		{"ctty flag", b.Flags&ProcFlagCTTY != 0, true},
		{"status", b.Status, uint32(statSleep)},
		{"pid", b.PID, uint32(4242)},
		{"ppid", b.PPID, uint32(1)},
		{"uid", b.UID, uint32(501)},
		{"comm", b.Comm, "Claude Helper ("},
		{"name", b.Name, "Claude Helper (Renderer)"},
		{"nfiles", b.NFiles, uint32(512)},
		{"pgid", b.PGID, uint32(4240)},
		{"e_tdev", b.TDev, Makedev(16, 3)},
		{"e_tpgid", b.TPGID, uint32(4241)},
		{"start sec", b.StartSec, uint64(1712345678)},
		{"start usec", b.StartUsec, uint64(654321)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.field, c.got, c.want)
		}
	}
}

// struct kevent_extinfo { struct kevent_qos_s kqext_kev; uint64_t kqext_sdata;
// int kqext_status; int kqext_sfflags; uint64_t kqext_reserved[2]; };
// struct kevent_qos_s { uint64_t ident @0; int16_t filter @8; uint16_t flags @10;
// int32_t qos @12; uint64_t udata @16; uint32_t fflags @24; uint32_t xflags @28;
// int64_t data @32; uint64_t ext[4] @40; } (72 bytes), so kqext_status @80.
func TestDecodeKeventExtinfo(t *testing.T) {
	b := newFixture(2*104+50).
		u64(0, 17).u16(8, 0xffff).u16(10, 0x0001).u32(12, 0x15).u64(16, 0xdada).u64(72, 9).u32(80, 0x1).u32(84, 0x77).
		u64(104+0, 23).u16(104+8, 0xfffe).u16(104+10, 0x0009).u32(104+80, knDisabled)
	got := DecodeKeventExtinfo(b)
	want := []Knote{
		{Ident: 17, Filter: evFiltRead, Flags: 0x1, Status: 0x1, UData: 0xdada, SData: 9, SFFlags: 0x77},
		{Ident: 23, Filter: evFiltWrite, Flags: 0x9, Status: knDisabled},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d knotes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("knote %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestKnoteWatches(t *testing.T) {
	cases := []struct {
		name string
		k    Knote
		fd   int
		want bool
	}{
		{"live read", Knote{Ident: 5, Filter: evFiltRead}, 5, true},
		{"live write", Knote{Ident: 5, Filter: evFiltWrite}, 5, true},
		{"other fd", Knote{Ident: 6, Filter: evFiltRead}, 5, false},
		{"vnode filter", Knote{Ident: 5, Filter: -4}, 5, false},
		{"disabled", Knote{Ident: 5, Filter: evFiltRead, Flags: evDisable, Status: knDisabled}, 5, false},
		{"dispatch-disabled stays watched", Knote{Ident: 5, Filter: evFiltRead, Flags: evDispatch, Status: knDisabled}, 5, true},
		{"dropping", Knote{Ident: 5, Filter: evFiltRead, Status: knDropping}, 5, false},
		{"negative fd", Knote{Ident: ^uint64(0), Filter: evFiltRead}, -1, false},
	}
	for _, c := range cases {
		if got := c.k.WatchesFD(c.fd); got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
}

// struct pipe_fdinfo { struct proc_fileinfo pfi; struct pipe_info pipeinfo; };
// struct pipe_info { struct vinfo_stat pipe_stat; uint64_t pipe_handle;
// uint64_t pipe_peerhandle; int pipe_status; int rfu_1; };
// so pipe_stat @24, pipe_handle @160, pipe_peerhandle @168, pipe_status @176.
func pipeFixture(flags uint32, handle, peer uint64, status uint32) fixture {
	return newFixture(184).
		u32(0, flags).
		u16(24+4, 0o010660). // S_IFIFO: fill_pipeinfo sets the mode
		u64(160, handle).
		u64(168, peer).
		u32(176, status)
}

func TestDecodePipeFDInfo(t *testing.T) {
	p, err := DecodePipeFDInfo(pipeFixture(openRead, 0xaaaa0001, 0xbbbb0002, pipeWantR|0x80))
	if err != nil {
		t.Fatal(err)
	}
	if p.Handle != 0xaaaa0001 || p.PeerHandle != 0xbbbb0002 {
		t.Errorf("handles: got %#x/%#x", p.Handle, p.PeerHandle)
	}
	if p.Status != pipeWantR|0x80 || !p.ReaderWaiting() {
		t.Errorf("status: got %#x", p.Status)
	}
	if !p.Reads() || p.Writes() {
		t.Errorf("openflags: reads %v writes %v", p.Reads(), p.Writes())
	}
}

// struct proc_taskinfo: six uint64 then int32 pti_policy @48 ... pti_csw @80,
// pti_threadnum @84, pti_numrunning @88, pti_priority @92.
func TestDecodeTaskInfo(t *testing.T) {
	b := newFixture(96).u32(80, 999).u32(84, 1).u32(88, 0).u32(92, 31)
	ti, err := DecodeTaskInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if ti.Threads != 1 || ti.Running != 0 {
		t.Errorf("got %+v", ti)
	}
}

// struct proc_threadinfo: pth_user_time @0, pth_system_time @8,
// pth_cpu_usage @16, pth_policy @20, pth_run_state @24, pth_flags @28,
// pth_sleep_time @32, pth_curpri @36, pth_priority @40, pth_maxpriority @44,
// pth_name[64] @48.
func TestDecodeThreadInfo(t *testing.T) {
	b := newFixture(112).u32(20, 1).u32(24, ThreadWaiting).u32(28, 0x1).u32(32, 3600).u32(36, 31).str(48, "main")
	ti, err := DecodeThreadInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if ti.RunState != ThreadWaiting || ti.Flags != 1 || ti.SleepTime != 3600 || ti.Name != "main" {
		t.Errorf("got %+v", ti)
	}
}

func TestShortBuffers(t *testing.T) {
	decoders := []struct {
		name string
		size int
		fn   func([]byte) error
	}{
		{"vnode_fdinfowithpath", 1200, func(b []byte) error { _, err := DecodeVnodeFDInfoWithPath(b); return err }},
		{"proc_bsdinfo", 136, func(b []byte) error { _, err := DecodeBSDInfo(b); return err }},
		{"pipe_fdinfo", 184, func(b []byte) error { _, err := DecodePipeFDInfo(b); return err }},
		{"proc_taskinfo", 96, func(b []byte) error { _, err := DecodeTaskInfo(b); return err }},
		{"proc_threadinfo", 112, func(b []byte) error { _, err := DecodeThreadInfo(b); return err }},
	}
	for _, d := range decoders {
		for _, n := range []int{0, 1, d.size / 2, d.size - 1} {
			err := d.fn(make([]byte, n))
			var se *ShortError
			if !errors.As(err, &se) {
				t.Errorf("%s with %d bytes: got %v, want ShortError", d.name, n, err)
				continue
			}
			if se.Got != n || se.Want != d.size {
				t.Errorf("%s: error says got %d want %d", d.name, se.Got, se.Want)
			}
		}
		if err := d.fn(make([]byte, d.size)); err != nil {
			t.Errorf("%s with exact size: %v", d.name, err)
		}
		if err := d.fn(make([]byte, d.size+9)); err != nil {
			t.Errorf("%s with extra bytes: %v", d.name, err)
		}
	}
	if got := DecodeKeventExtinfo(make([]byte, 103)); len(got) != 0 {
		t.Errorf("kevent_extinfo with 103 bytes: got %d knotes", len(got))
	}
}

func TestDevT(t *testing.T) {
	// lsof shows a leaked master of ttys016 as "CHR 15,16 /dev/ptmx".
	dev := uint32(15<<24 | 16)
	if Major(dev) != 15 || Minor(dev) != 16 {
		t.Errorf("major/minor of %#x: %d,%d", dev, Major(dev), Minor(dev))
	}
	if Makedev(16, 510) != 16<<24|510 {
		t.Errorf("makedev")
	}
	if Minor(0xffffffff) != 0xffffff || Major(0xffffffff) != 0xff {
		t.Errorf("NODEV split")
	}
}

// The revoke rung's before and after, on fixture bytes: the slave answer
// before (a VCHR of the ttys major, path /dev/ttys007), the errno after
// (vn_revoke left a dead vnode: ENOENT), a closed fd (EBADF).
func TestDescribeAnswerForTheRevokeRung(t *testing.T) {
	m := Majors{PTMX: 15, TTYS: 16, TTYSKnown: true}
	slave := vnodeFixture().u32(24+116, Makedev(16, 7)).str(176, "/dev/ttys007\x00")
	now, err := DescribeAnswer(slave, nil, m, Makedev(3, 2))
	if err != nil || now.Kind != FDPTY || now.Side != snapshot.Slave || now.Index != 7 || now.Path != "/dev/ttys007" {
		t.Fatalf("slave: %+v %v", now, err)
	}
	master := vnodeFixture().u32(24+116, Makedev(15, 7))
	if now, err := DescribeAnswer(master, nil, m, Makedev(3, 2)); err != nil || now.Side != snapshot.Master || now.Index != 7 {
		t.Fatalf("master: %+v %v", now, err)
	}
	for _, c := range []struct {
		errno error
		want  FDKind
	}{{syscall.ENOENT, FDRevoked}, {syscall.EBADF, FDClosed}, {syscall.ENOTSUP, FDOther}} {
		if now, err := DescribeAnswer(nil, c.errno, m, 0); err != nil || now.Kind != c.want {
			t.Errorf("%v: %+v %v", c.errno, now, err)
		}
	}
	if _, err := DescribeAnswer(nil, syscall.ESRCH, m, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("a gone process: %v", err)
	}
	if _, err := DescribeAnswer(slave[:100], nil, m, 0); err == nil {
		t.Error("a short answer decoded")
	}
}
