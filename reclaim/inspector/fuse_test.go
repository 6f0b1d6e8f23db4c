package inspector

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

// fuseBinary builds fixture bytes: filler, then each wire as the Electron docs
// lay it out (sentinel, version, length, fuse bytes), then filler.
func fuseBinary(filler int, wires ...string) []byte {
	var b bytes.Buffer
	junk := func(n int) {
		for i := 0; i < n; i++ {
			b.WriteByte(byte(i*7 + 3)) // never spells the sentinel
		}
	}
	junk(filler)
	for _, w := range wires {
		b.WriteString(FuseSentinel)
		b.WriteByte(1)
		b.WriteByte(byte(len(w)))
		b.WriteString(w)
		junk(filler)
	}
	return b.Bytes()
}

func TestReadFuseWires(t *testing.T) {
	// The wire of an Electron with nodeCliInspect off (index 3), as
	// `npx @electron/fuses write --app X EnableNodeCliInspectArguments=off`
	// leaves it: 9 fuses.
	const off = "101001000"
	const on = "101101000"
	for _, tc := range []struct {
		name  string
		data  []byte
		wires int
		ok    bool
		why   string
	}{
		{"not electron", fuseBinary(5000), 0, true, "no Electron fuse wire"},
		{"on", fuseBinary(3000, on), 1, true, "nodeCliInspect is on"},
		{"off", fuseBinary(3000, off), 1, false, "nodeCliInspect is off"},
		// Across the first read: the sentinel itself is split, then its
		// header, then its wire.
		{"off, split sentinel", fuseBinary(fuseReadSize-10, off), 1, false, "is off"},
		{"off, split header", fuseBinary(fuseReadSize-len(FuseSentinel)-1, off), 1, false, "is off"},
		{"off, split wire", fuseBinary(fuseReadSize-len(FuseSentinel)-4, off), 1, false, "is off"},
		{"universal, both on", fuseBinary(1<<20, on, on), 2, true, "is on"},
		{"universal, disagree", fuseBinary(100, on, off), 2, false, "disagree"},
		{"short wire", fuseBinary(100, "11"), 1, true, "predates nodeCliInspect"},
		{"removed", fuseBinary(100, "101r"), 1, false, "marked removed"},
		{"garbage state", fuseBinary(100, "101x"), 1, false, "unknown state"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wires, err := ReadFuseWires(bytes.NewReader(tc.data))
			if err != nil {
				t.Fatal(err)
			}
			if len(wires) != tc.wires {
				t.Fatalf("%d wires, want %d", len(wires), tc.wires)
			}
			ok, why := NodeCliInspect(wires)
			if ok != tc.ok || !strings.Contains(why, tc.why) {
				t.Fatalf("NodeCliInspect = %v, %q; want %v, %q", ok, why, tc.ok, tc.why)
			}
			// Byte by byte gives the same wires at the same offsets.
			if len(tc.data) < 1<<16 {
				a, err1 := ReadFuseWires(bytes.NewReader(tc.data))
				b, err2 := ReadFuseWires(iotest.OneByteReader(bytes.NewReader(tc.data)))
				if err1 != nil || err2 != nil || len(a) != len(b) {
					t.Fatalf("one byte at a time: %v %v %d %d", err1, err2, len(a), len(b))
				}
				for i := range a {
					if a[i].Offset != b[i].Offset || !bytes.Equal(a[i].Fuses, b[i].Fuses) {
						t.Fatalf("wire %d: %+v vs %+v", i, a[i], b[i])
					}
				}
			}
		})
	}
}

func TestReadFuseWiresOffsets(t *testing.T) {
	data := fuseBinary(1<<20+17, "1011", "1011")
	wires, err := ReadFuseWires(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range wires {
		if !bytes.Equal(data[w.Offset:w.Offset+int64(len(FuseSentinel))], []byte(FuseSentinel)) {
			t.Fatalf("offset %d does not point at the sentinel", w.Offset)
		}
		if w.Version != 1 || string(w.Fuses) != "1011" {
			t.Fatalf("wire %+v", w)
		}
	}
}

func TestReadFuseWiresRefusesBadFiles(t *testing.T) {
	cut := fuseBinary(10, "101101000")
	cut = cut[:len(cut)-10-3] // the end of the file cuts the wire
	if _, err := ReadFuseWires(bytes.NewReader(cut)); err == nil || !strings.Contains(err.Error(), "cut short") {
		t.Fatalf("cut wire: %v", err)
	}
	if _, err := ReadFuseWires(bytes.NewReader(fuseBinary(10, "1", "1", "1"))); err == nil {
		t.Fatal("three wires accepted")
	}
	v2 := fuseBinary(10, "1011")
	v2[10+len(FuseSentinel)] = 2
	wires, err := ReadFuseWires(bytes.NewReader(v2))
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := NodeCliInspect(wires); ok || !strings.Contains(why, "version 2") {
		t.Fatalf("version 2: %v %q", ok, why)
	}
}

func TestFuseFile(t *testing.T) {
	for exe, want := range map[string]string{
		"/Applications/Claude.app/Contents/MacOS/Claude": "/Applications/Claude.app/Contents/Frameworks/Electron Framework.framework/Electron Framework",
		"/opt/Foo/foo":        "/opt/Foo/foo",
		"/usr/local/bin/node": "/usr/local/bin/node",
	} {
		if got := FuseFile(exe); got != want {
			t.Errorf("FuseFile(%q) = %q, want %q", exe, got, want)
		}
	}
}
