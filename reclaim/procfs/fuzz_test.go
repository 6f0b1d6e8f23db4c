package procfs

import (
	"bytes"
	"testing"
)

// The fuzz targets check that no input makes a parser panic, and that what
// one accepts is consistent.

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("4163 (python3) R 4161 4161 1034 34816 -1 4194304 2883 6579 18 3 4 2 3 2 20 0 1 0 26778 17039360 3380\n"))
	f.Add([]byte("1 (a) b) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStat(b)
		if err == nil && st.Threads < 0 && st.PPID < -1 {
			t.Logf("odd but accepted: %+v", st)
		}
		TTYDevice(st.TTYNr)
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("Name:\tbash\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nSigBlk:\t0\nSigCgt:\t1\nSeccomp:\t0\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseStatus(b) })
}

func FuzzParseFDInfo(f *testing.F) {
	f.Add([]byte("pos:\t0\nflags:\t02100002\nmnt_id:\t24\nino:\t91\ntty-index:\t7\n"))
	f.Add([]byte("pos:\t0\nflags:\t02\nmnt_id:\t17\ntfd:        3 events:       19 data:                3  pos:0 ino:5b sdev:6\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		fi, err := ParseFDInfo(b)
		if err == nil && fi.TTYIndex < -1 {
			t.Fatalf("accepted a negative tty-index: %+v", fi)
		}
		for _, e := range fi.Epoll {
			if err == nil && e.TFD < 0 {
				t.Fatalf("accepted a negative tfd: %+v", e)
			}
		}
	})
}

func FuzzParseSyscall(f *testing.F) {
	f.Add([]byte("0 0x3 0x7ffd0b1c 0x1 0x0 0x0 0x0 0x7ffd0b18 0x7f5c2e1147e2\n"))
	f.Add([]byte("running"))
	f.Add([]byte("-1 0x1 0x2"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSyscall(b)
		if err == nil && s.Running && s.InUser {
			t.Fatal("both running and in user space")
		}
	})
}

func FuzzLink(f *testing.F) {
	for _, s := range []string{"/dev/ptmx", "/dev/pts/3 (deleted)", "pipe:[1]", "anon_inode:[eventpoll]", "/"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, ino, _ := Link(b)
		if kind != LinkPipe && ino != 0 {
			t.Fatal("inode outside a pipe link")
		}
	})
}

func FuzzParseMountinfo(f *testing.F) {
	f.Add([]byte("26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600\n91 27 0:61 / /a\\040b rw shared:4 - fuse.x x rw\n"))
	f.Add([]byte("1 2 3:4 \\134 / - t s o"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := ParseMountinfo(b)
		if err != nil {
			return
		}
		for _, m := range ms {
			if m.ID < 0 || m.Parent < 0 || m.FSType == "" {
				t.Fatalf("accepted %+v", m)
			}
		}
		if bytes.Count(b, []byte{'\n'})+1 < len(ms) {
			t.Fatalf("%d mounts from %d lines", len(ms), bytes.Count(b, []byte{'\n'})+1)
		}
	})
}

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte("7fce751e2000-7fce751e4000 r-xp 00000000 00:00 0   [vdso]\n55eb-55ec r-xp 0 fe:00 1 /a b\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, m := range ParseMaps(b) {
			if m.End < m.Start {
				t.Fatalf("accepted %+v", m)
			}
		}
	})
}
