package procfs

import "testing"

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
