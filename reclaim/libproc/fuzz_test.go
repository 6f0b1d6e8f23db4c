package libproc

import "testing"

// The fuzz targets only check that no input panics: libproc answers are
// trusted for layout, but a short or truncated answer must never crash the
// helper.

func FuzzDecodeVnodeFDInfoWithPath(f *testing.F) {
	f.Add([]byte(vnodeFixture()))
	f.Add([]byte{})
	f.Add(make([]byte, 1199))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeVnodeFDInfoWithPath(b)
		if err == nil && len(v.Path) > maxPathLen {
			t.Fatalf("path longer than MAXPATHLEN: %d", len(v.Path))
		}
	})
}

func FuzzDecodeBSDInfo(f *testing.F) {
	f.Add([]byte(bsdFixture()))
	f.Add([]byte{})
	f.Add(make([]byte, 135))
	f.Fuzz(func(t *testing.T, b []byte) {
		bsd, err := DecodeBSDInfo(b)
		if err != nil {
			return
		}
		// The mapping must not panic on any decoded values either.
		p := buildProcess(bsd, "", nil, Majors{PTMX: 15, TTYS: 16, TTYSKnown: true})
		if p.PID != int(bsd.PID) {
			t.Fatalf("pid %d != %d", p.PID, bsd.PID)
		}
	})
}

func FuzzDecodeKeventExtinfo(f *testing.F) {
	f.Add(make([]byte, 104))
	f.Add(make([]byte, 300))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		ks := DecodeKeventExtinfo(b)
		if len(ks) != len(b)/sizeKeventExtinfo {
			t.Fatalf("%d knotes from %d bytes", len(ks), len(b))
		}
		_ = watchedFDs(ks)
	})
}

func FuzzDecodeFDInfos(f *testing.F) {
	f.Add(make([]byte, 16))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		fds := DecodeFDInfos(b)
		if len(fds) != len(b)/sizeFDInfo {
			t.Fatalf("%d fds from %d bytes", len(fds), len(b))
		}
	})
}

func FuzzDecodePipeFDInfo(f *testing.F) {
	f.Add([]byte(pipeFixture(openRead, 1, 2, pipeWantR)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodePipeFDInfo(b)
	})
}
