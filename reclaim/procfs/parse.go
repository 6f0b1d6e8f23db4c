// Package procfs reads the Linux view of processes, PTYs and pipes from /proc
// and turns it into a snapshot.Snapshot.
//
// The parsers in this file are pure functions over the bytes of one /proc
// file, with no build tags, so they are table-tested and fuzzed on fixtures.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Stat is what we use of /proc/PID/stat.
type Stat struct {
	PID       int
	Comm      string
	State     byte
	PPID      int
	PGRP      int
	Session   int
	TTYNr     uint32
	Flags     uint32
	Threads   int
	StartTime uint64 // clock ticks after boot
	// Processor is the CPU the task last ran on (field 39), -1 if absent.
	Processor int
}

// pfKthread is PF_KTHREAD from include/linux/sched.h.
const pfKthread = 0x00200000

// Kernel reports whether the process is a kernel thread.
func (s Stat) Kernel() bool { return s.Flags&pfKthread != 0 }

var errShort = errors.New("too few fields")

// ParseStat parses /proc/PID/stat. comm may hold spaces and parentheses, so
// it is whatever lies between the first '(' and the last ')'.
func ParseStat(b []byte) (Stat, error) {
	var s Stat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return s, errors.New("stat: no comm")
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil {
		return s, fmt.Errorf("stat: pid: %w", err)
	}
	s.PID = pid
	s.Comm = string(b[open+1 : closing])
	// Fields after comm, numbered from 3 (state) as in proc(5).
	f := bytes.Fields(b[closing+1:])
	field := func(n int) []byte { return f[n-3] }
	if len(f) < 22-2 {
		return s, fmt.Errorf("stat: %w", errShort)
	}
	if len(field(3)) != 1 {
		return s, errors.New("stat: bad state")
	}
	s.State = field(3)[0]
	ints := []struct {
		n   int
		dst *int
	}{{4, &s.PPID}, {5, &s.PGRP}, {6, &s.Session}, {20, &s.Threads}}
	for _, x := range ints {
		v, err := strconv.Atoi(string(field(x.n)))
		if err != nil {
			return s, fmt.Errorf("stat: field %d: %w", x.n, err)
		}
		*x.dst = v
	}
	// tty_nr is printed as a signed int; flags as unsigned.
	tty, err := strconv.ParseInt(string(field(7)), 10, 64)
	if err != nil {
		return s, fmt.Errorf("stat: tty_nr: %w", err)
	}
	s.TTYNr = uint32(tty)
	flags, err := strconv.ParseUint(string(field(9)), 10, 32)
	if err != nil {
		return s, fmt.Errorf("stat: flags: %w", err)
	}
	s.Flags = uint32(flags)
	if s.StartTime, err = strconv.ParseUint(string(field(22)), 10, 64); err != nil {
		return s, fmt.Errorf("stat: starttime: %w", err)
	}
	s.Processor = -1
	if len(f) >= 39-2 {
		if cpu, err := strconv.Atoi(string(field(39))); err == nil && cpu >= 0 {
			s.Processor = cpu
		}
	}
	return s, nil
}

// TTYDevice decodes stat's tty_nr into major and minor numbers.
func TTYDevice(ttyNr uint32) (major, minor uint32) {
	major = (ttyNr >> 8) & 0xfff
	minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00)
	return major, minor
}

// Unix98 PTY slave majors (Documentation/admin-guide/devices.txt).
const (
	ptySlaveMajorFirst = 136
	ptySlaveMajorLast  = 143
	ptmxMajor          = 5
	ptmxMinor          = 2
)

// SlaveIndex returns the PTY index of a slave device, or false when the
// device is not a Unix98 PTY slave. Current kernels give every slave major
// 136 with a 20-bit minor; the 137..143 majors are kept for old numbering.
func SlaveIndex(major, minor uint32) (int, bool) {
	if major < ptySlaveMajorFirst || major > ptySlaveMajorLast {
		return 0, false
	}
	return int((major-ptySlaveMajorFirst)<<8 + minor), true
}

// IsPTMX reports whether a device number is the PTY multiplexer (a master).
func IsPTMX(major, minor uint32) bool { return major == ptmxMajor && minor == ptmxMinor }

// Status is what we use of /proc/PID/status.
type Status struct {
	UID       int    // real uid
	State     string // "S", "R", "Z", ...
	TracerPID int
	Seccomp   int
	SigPnd    uint64 // pending for the thread
	ShdPnd    uint64 // pending for the process
	SigBlk    uint64
	SigCgt    uint64
	Threads   int
	Kthread   bool // the "Kthread: 1" line of recent kernels
}

// SigkillPending reports whether SIGKILL is on its way, which a killed
// thread shows even while a tracer holds it stopped.
func (s Status) SigkillPending() bool {
	const sigkill = 1 << (9 - 1)
	return (s.SigPnd|s.ShdPnd)&sigkill != 0
}

// eachField calls fn with the key and the trimmed value of every
// "key:\tvalue" line, stopping at the first error.
func eachField(b []byte, fn func(key string, val []byte) error) error {
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		key, val, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		if err := fn(string(key), bytes.TrimSpace(val)); err != nil {
			return err
		}
	}
	return nil
}

// ParseStatus parses /proc/PID/status. Missing optional lines keep zero
// values; a malformed line we rely on is an error.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	sawUID := false
	err := eachField(b, func(key string, val []byte) error {
		var err error
		switch key {
		case "Uid":
			f := bytes.Fields(val)
			if len(f) == 0 {
				return errors.New("status: empty Uid")
			}
			s.UID, err = strconv.Atoi(string(f[0]))
			sawUID = true
		case "State":
			st, _, _ := bytes.Cut(val, []byte{' '})
			s.State = string(st)
		case "Kthread":
			s.Kthread = string(val) == "1"
		case "SigPnd":
			s.SigPnd, err = strconv.ParseUint(string(val), 16, 64)
		case "ShdPnd":
			s.ShdPnd, err = strconv.ParseUint(string(val), 16, 64)
		case "TracerPid":
			s.TracerPID, err = strconv.Atoi(string(val))
		case "Seccomp":
			s.Seccomp, err = strconv.Atoi(string(val))
		case "Threads":
			s.Threads, err = strconv.Atoi(string(val))
		case "SigBlk":
			s.SigBlk, err = strconv.ParseUint(string(val), 16, 64)
		case "SigCgt":
			s.SigCgt, err = strconv.ParseUint(string(val), 16, 64)
		}
		if err != nil {
			return fmt.Errorf("status: %s: %w", key, err)
		}
		return nil
	})
	if err == nil && !sawUID {
		err = errors.New("status: no Uid line")
	}
	return s, err
}

// EpollEntry is one registration listed in an epoll fd's fdinfo.
type EpollEntry struct {
	TFD    int
	Events uint32
	Ino    uint64
}

// FDInfo is what we use of /proc/PID/fdinfo/N.
type FDInfo struct {
	Flags uint32 // octal in the file
	MntID int
	// TTYIndex is the PTY index of a master (-1 when the line is absent).
	TTYIndex int
	Epoll    []EpollEntry
}

// Access modes of FDInfo.Flags.
const (
	accModeMask = 03
	oWronly     = 01
	oRdwr       = 02
	oCloexec    = 02000000
)

// Writable reports whether the fd was opened with write access.
func (f FDInfo) Writable() bool {
	m := f.Flags & accModeMask
	return m == oWronly || m == oRdwr
}

// Readable reports whether the fd was opened with read access.
func (f FDInfo) Readable() bool { return f.Flags&accModeMask != oWronly }

// CloseOnExec reports the fd's close-on-exec bit.
func (f FDInfo) CloseOnExec() bool { return f.Flags&oCloexec != 0 }

// ParseFDInfo parses /proc/PID/fdinfo/N, including the tty-index line of a
// PTY master and the tfd lines of an epoll fd.
func ParseFDInfo(b []byte) (FDInfo, error) {
	fi := FDInfo{TTYIndex: -1}
	sawFlags := false
	err := eachField(b, func(key string, val []byte) error {
		var err error
		switch key {
		case "flags":
			var v uint64
			v, err = strconv.ParseUint(string(val), 8, 32)
			fi.Flags = uint32(v)
			sawFlags = true
		case "mnt_id":
			fi.MntID, err = strconv.Atoi(string(val))
		case "tty-index":
			fi.TTYIndex, err = strconv.Atoi(string(val))
			if err == nil && fi.TTYIndex < 0 {
				err = errors.New("negative")
			}
		case "tfd":
			var e EpollEntry
			e, err = parseEpollEntry(val)
			fi.Epoll = append(fi.Epoll, e)
		}
		if err != nil {
			return fmt.Errorf("fdinfo: %s: %w", key, err)
		}
		return nil
	})
	if err == nil && !sawFlags {
		err = errors.New("fdinfo: no flags line")
	}
	return fi, err
}

// parseEpollEntry parses the rest of a line
// "tfd:        5 events:       19 data:  5  pos:0 ino:3 sdev:d".
func parseEpollEntry(rest []byte) (EpollEntry, error) {
	var e EpollEntry
	f := bytes.Fields(rest)
	if len(f) == 0 {
		return e, errShort
	}
	tfd, err := strconv.Atoi(string(f[0]))
	if err != nil || tfd < 0 {
		return e, fmt.Errorf("bad tfd %q", f[0])
	}
	e.TFD = tfd
	for i := 1; i < len(f); i++ {
		k := string(f[i])
		var v string
		if name, val, ok := strings.Cut(k, ":"); ok && val != "" {
			k, v = name+":", val // "ino:3" style
		} else if i+1 < len(f) {
			v = string(f[i+1]) // "events: 19" style
			i++
		}
		switch k {
		case "events:":
			x, err := strconv.ParseUint(v, 16, 32)
			if err != nil {
				return e, fmt.Errorf("bad events %q", v)
			}
			e.Events = uint32(x)
		case "ino:":
			x, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return e, fmt.Errorf("bad ino %q", v)
			}
			e.Ino = x
		}
	}
	return e, nil
}

// Syscall is the parsed /proc/PID/syscall (or task/TID/syscall).
type Syscall struct {
	Running bool // on a CPU: nothing more is known
	InUser  bool // not in a syscall ("-1 sp pc")
	Nr      int
	Args    [6]uint64
}

// ParseSyscall parses "nr a0 a1 a2 a3 a4 a5 sp pc", "-1 sp pc" or "running".
func ParseSyscall(b []byte) (Syscall, error) {
	var s Syscall
	f := bytes.Fields(b)
	if len(f) == 0 {
		return s, errors.New("syscall: empty")
	}
	if string(f[0]) == "running" {
		s.Running = true
		return s, nil
	}
	nr, err := strconv.Atoi(string(f[0]))
	if err != nil {
		return s, fmt.Errorf("syscall: nr: %w", err)
	}
	if nr < 0 {
		s.InUser = true
		s.Nr = nr
		return s, nil
	}
	if len(f) < 7 {
		return s, fmt.Errorf("syscall: %w", errShort)
	}
	s.Nr = nr
	for i := range s.Args {
		v := strings.TrimPrefix(string(f[i+1]), "0x")
		if s.Args[i], err = strconv.ParseUint(v, 16, 64); err != nil {
			return s, fmt.Errorf("syscall: arg %d: %w", i, err)
		}
	}
	return s, nil
}

// LinkKind is what an fd's /proc/PID/fd/N link says it is.
type LinkKind int

// Kinds of fd link that matter here.
const (
	LinkOther   LinkKind = iota
	LinkPTMX             // "/dev/ptmx", "/dev/pts/ptmx": maybe a master (confirm by device)
	LinkNumeric          // ".../N" or ".../N (deleted)": maybe a slave (confirm by device)
	LinkPipe             // "pipe:[INODE]"
	LinkEpoll            // "anon_inode:[eventpoll]"
)

// Link classifies an fd link. The path forms are only hints, because a
// devpts mounted elsewhere (a container's) shows other paths; the device
// number read afterwards decides. For pipes it returns the inode.
func Link(l []byte) (kind LinkKind, pipeIno uint64, deleted bool) {
	switch {
	case bytes.HasPrefix(l, []byte("pipe:[")) && bytes.HasSuffix(l, []byte("]")):
		ino, err := strconv.ParseUint(string(l[len("pipe:["):len(l)-1]), 10, 64)
		if err != nil {
			return LinkOther, 0, false
		}
		return LinkPipe, ino, false
	case bytes.Equal(l, []byte("anon_inode:[eventpoll]")):
		return LinkEpoll, 0, false
	case len(l) == 0 || l[0] != '/':
		return LinkOther, 0, false
	}
	deleted = bytes.HasSuffix(l, []byte(" (deleted)"))
	if deleted {
		l = l[:len(l)-len(" (deleted)")]
	}
	base := l[bytes.LastIndexByte(l, '/')+1:]
	if string(base) == "ptmx" {
		return LinkPTMX, 0, deleted
	}
	if len(base) == 0 || len(base) > 7 {
		return LinkOther, 0, false
	}
	for _, c := range base {
		if c < '0' || c > '9' {
			return LinkOther, 0, false
		}
	}
	return LinkNumeric, 0, deleted
}

// isReadSyscall reports whether nr is read(2) or readv(2) on arch, the calls
// a child waiting for its parent's "go" byte blocks in.
func isReadSyscall(arch string, nr int) bool {
	switch arch {
	case "amd64":
		return nr == 0 || nr == 19
	case "arm64":
		return nr == 63 || nr == 65
	}
	return false
}

// Mount is one line of /proc/PID/mountinfo.
type Mount struct {
	ID     int
	Parent int
	// Dev is the file system's st_dev (field 3, "major:minor").
	Dev uint64
	// Root is the path inside the file system that is mounted; Point is
	// where, relative to the reading process's root. Both unescaped.
	Root   string
	Point  string
	FSType string
}

// Mkdev builds a st_dev/st_rdev value the way glibc's makedev does, so that
// device numbers from text compare with those from stat.
func Mkdev(major, minor uint32) uint64 {
	return uint64(major&0xfff)<<8 | uint64(major&^0xfff)<<32 |
		uint64(minor&0xff) | uint64(minor&^0xff)<<12
}

// ParseMountinfo parses /proc/PID/mountinfo (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
//
// Every line must parse: a table with a line we cannot read could hide
// the one mount that matters.
func ParseMountinfo(b []byte) ([]Mount, error) {
	var out []Mount
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		m, err := parseMountLine(line)
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w", n, err)
		}
		out = append(out, m)
	}
	return out, nil
}

func parseMountLine(line []byte) (Mount, error) {
	var m Mount
	f := bytes.Split(line, []byte{' '})
	// Optional fields end with a lone "-"; after it come fstype and source.
	sep := -1
	for i := 6; i < len(f); i++ {
		if string(f[i]) == "-" {
			sep = i
			break
		}
	}
	if len(f) < 6 || sep < 0 || sep+1 >= len(f) {
		return m, errShort
	}
	var err error
	if m.ID, err = strconv.Atoi(string(f[0])); err != nil || m.ID < 0 {
		return m, fmt.Errorf("bad mount id %q", f[0])
	}
	if m.Parent, err = strconv.Atoi(string(f[1])); err != nil || m.Parent < 0 {
		return m, fmt.Errorf("bad parent id %q", f[1])
	}
	maj, min, ok := bytes.Cut(f[2], []byte{':'})
	major, err1 := strconv.ParseUint(string(maj), 10, 32)
	minor, err2 := strconv.ParseUint(string(min), 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return m, fmt.Errorf("bad device %q", f[2])
	}
	m.Dev = Mkdev(uint32(major), uint32(minor))
	if m.Root, err = unescapeOctal(f[3]); err != nil {
		return m, fmt.Errorf("root: %w", err)
	}
	if m.Point, err = unescapeOctal(f[4]); err != nil {
		return m, fmt.Errorf("mount point: %w", err)
	}
	m.FSType = string(f[sep+1])
	if m.FSType == "" {
		return m, errors.New("empty fs type")
	}
	return m, nil
}

// unescapeOctal undoes the kernel's \ooo escaping of space, tab, newline
// and backslash in mountinfo paths.
func unescapeOctal(b []byte) (string, error) {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b), nil
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			out = append(out, b[i])
			continue
		}
		if i+3 >= len(b) {
			return "", errors.New("short escape")
		}
		v := 0
		for _, c := range b[i+1 : i+4] {
			if c < '0' || c > '7' {
				return "", errors.New("bad escape")
			}
			v = v*8 + int(c-'0')
		}
		if v > 0xff {
			return "", errors.New("bad escape")
		}
		out = append(out, byte(v))
		i += 3
	}
	return string(out), nil
}

// Kernel-served file system types whose files a scan may copy or stat:
// none of them has a user-space server that could leave a close or a stat
// waiting forever (FUSE, CUSE).
const (
	FSDevpts   = "devpts"
	FSDevtmpfs = "devtmpfs"
	FSTmpfs    = "tmpfs"
)

// MasterFS reports whether a /dev/ptmx node may live on a file system of
// this type: the devpts instance's own ptmx, devtmpfs's /dev/ptmx, or a
// container's tmpfs /dev.
func MasterFS(fstype string) bool {
	return fstype == FSDevpts || fstype == FSDevtmpfs || fstype == FSTmpfs
}

// SlaveFS reports whether PTY slaves live on a file system of this type:
// only devpts creates them.
func SlaveFS(fstype string) bool { return fstype == FSDevpts }

// Mapping is one line of /proc/PID/maps.
type Mapping struct {
	Start, End uint64
	Perms      string
	Dev        uint64 // of the backing file; 0 for anonymous memory
	Inode      uint64
	Name       string
}

// Exec reports whether the mapping is executable.
func (m Mapping) Exec() bool { return len(m.Perms) >= 3 && m.Perms[2] == 'x' }

// ParseMaps parses /proc/PID/maps:
//
//	7f2c4a1e5000-7f2c4a20b000 r-xp 00028000 fe:01 1838 /usr/lib/libc.so.6
//
// Lines that do not parse are skipped: a caller only reads mappings it
// found and proved, so a missing one costs nothing but a candidate.
func ParseMaps(b []byte) []Mapping {
	var out []Mapping
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		f := bytes.Fields(line)
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := bytes.Cut(f[0], []byte{'-'})
		start, err1 := strconv.ParseUint(string(lo), 16, 64)
		end, err2 := strconv.ParseUint(string(hi), 16, 64)
		maj, min, ok2 := bytes.Cut(f[3], []byte{':'})
		major, err3 := strconv.ParseUint(string(maj), 16, 32)
		minor, err4 := strconv.ParseUint(string(min), 16, 32)
		ino, err5 := strconv.ParseUint(string(f[4]), 10, 64)
		if !ok || !ok2 || err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil || end < start {
			continue
		}
		m := Mapping{Start: start, End: end, Perms: string(f[1]), Dev: Mkdev(uint32(major), uint32(minor)), Inode: ino}
		if len(f) >= 6 {
			m.Name = string(afterFields(line, 5))
		}
		out = append(out, m)
	}
	return out
}

// afterFields returns line after its first n space-separated fields and the
// spaces that follow them: a maps name may itself hold spaces.
func afterFields(line []byte, n int) []byte {
	for ; n > 0; n-- {
		line = bytes.TrimLeft(line, " \t")
		i := bytes.IndexAny(line, " \t")
		if i < 0 {
			return nil
		}
		line = line[i:]
	}
	return bytes.TrimLeft(line, " \t")
}

// Creds are the credentials of one thread, from /proc/PID/task/TID/status.
type Creds struct {
	UIDs, GIDs     [4]int // real, effective, saved, fs
	CapPrm, CapEff uint64
}

var errCredFields = errors.New("status lacks Uid, Gid, CapPrm or CapEff")

// ParseCreds reads the Uid, Gid, CapPrm and CapEff lines of a status file;
// all four must be there.
func ParseCreds(b []byte) (Creds, error) {
	var c Creds
	seen := 0
	err := eachField(b, func(key string, val []byte) error {
		var err error
		switch key {
		case "Uid":
			c.UIDs, err = parseIDs(val)
		case "Gid":
			c.GIDs, err = parseIDs(val)
		case "CapPrm":
			c.CapPrm, err = strconv.ParseUint(string(val), 16, 64)
		case "CapEff":
			c.CapEff, err = strconv.ParseUint(string(val), 16, 64)
		default:
			return nil
		}
		if err != nil {
			return fmt.Errorf("status line %s: %w", key, err)
		}
		seen++
		return nil
	})
	if err != nil {
		return Creds{}, err
	}
	if seen != 4 {
		return Creds{}, errCredFields
	}
	return c, nil
}

// parseIDs reads the four ids of a Uid or Gid line.
func parseIDs(val []byte) ([4]int, error) {
	var ids [4]int
	f := bytes.Fields(val)
	if len(f) != 4 {
		return ids, errors.New("want 4 ids")
	}
	for i := range f {
		n, err := strconv.ParseUint(string(f[i]), 10, 32)
		if err != nil {
			return ids, err
		}
		ids[i] = int(n)
	}
	return ids, nil
}
