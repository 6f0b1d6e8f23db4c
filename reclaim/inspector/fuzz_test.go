package inspector

import (
	"bufio"
	"bytes"
	"encoding/json"
	"testing"
)

// Everything the route reads from a target or a binary is untrusted: no
// input may panic, and the bounds hold.

func FuzzReadFuseWires(f *testing.F) {
	f.Add(fuseBinary(10, "101101000"))
	f.Add([]byte(FuseSentinel + "\x01"))
	f.Add([]byte(FuseSentinel + FuseSentinel + "\x01\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		wires, err := ReadFuseWires(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(wires) > maxFuseWires {
			t.Fatalf("%d wires", len(wires))
		}
		for _, w := range wires {
			if len(w.Fuses) > 255 || !bytes.HasPrefix(b[w.Offset:], []byte(FuseSentinel)) {
				t.Fatalf("wire %+v", w)
			}
		}
		NodeCliInspect(wires)
	})
}

func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0x81, 0x02, '{', '}'})
	f.Add([]byte{0x01, 0x01, 'a', 0x89, 0x00, 0x80, 0x01, 'b'})
	f.Add([]byte{0x81, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		w := &wsConn{c: discardConn{}, r: bufio.NewReader(bytes.NewReader(b))}
		if msg, err := w.readMessage(); err == nil && len(msg) > maxMessage {
			t.Fatalf("message of %d bytes", len(msg))
		}
	})
}

func FuzzParseOutcomes(f *testing.F) {
	f.Add([]byte(`[{"fd":3,"how":"destroyed"},{"fd":9,"how":"closed"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		asked := []int{3, 4}
		out, err := parseOutcomes(json.RawMessage(b), asked)
		if err != nil {
			return
		}
		if len(out) != len(asked) {
			t.Fatalf("%d outcomes for %d fds", len(out), len(asked))
		}
		for _, o := range out {
			if o.FD != 3 && o.FD != 4 {
				t.Fatalf("outcome for fd %d, never asked", o.FD)
			}
		}
	})
}
