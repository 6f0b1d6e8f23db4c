package inspector

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Electron's fuses are bytes in its binary, flipped at package time and
// covered by the code signature (electron docs/tutorial/fuses.md, "The
// hard way"):
//
//	| sentinel | fuse_version (1 byte) | fuse_wire_length (1 byte) | fuse_wire (N bytes) |
//
// Each wire byte is '0' (disabled), '1' (enabled) or 'r' (removed). In
// version 1 of the schema (@electron/fuses FuseV1Options) index 3 is
// EnableNodeCliInspectArguments, the nodeCliInspect fuse: when it is off,
// SIGUSR1 does not start the main process's inspector.

// FuseSentinel marks the start of the fuse wire.
const FuseSentinel = "dL7pKGdnNz796PbbjQWNKmHXBZaB9tsX"

// The states of one fuse byte.
const (
	FuseDisabled = '0'
	FuseEnabled  = '1'
	FuseRemoved  = 'r'
)

// fuseV1NodeCliInspect is the nodeCliInspect fuse's index in a version 1
// wire.
const fuseV1NodeCliInspect = 3

// maxFuseWires bounds how many wires one binary may hold: a universal
// macOS binary has one per architecture slice (@electron/fuses refuses
// more than 2).
const maxFuseWires = 2

// fuseReadSize is how much of a binary ReadFuseWires holds at once: a
// chunk, plus room for a sentinel, its header and the longest wire a
// one-byte length can describe, carried over from the previous read.
const fuseReadSize = 1<<20 + len(FuseSentinel) + 2 + 255

// FuseWire is one decoded fuse wire.
type FuseWire struct {
	// Offset is where the sentinel starts in the file.
	Offset  int64
	Version byte
	Fuses   []byte
}

// ReadFuseWires finds every fuse wire in a binary. It reads r once, in
// chunks, and keeps at most one chunk and one wire's bytes in memory (an
// Electron framework is over 100 MB). No sentinel gives no wires and no
// error: the binary is not Electron 12 or later.
func ReadFuseWires(r io.Reader) ([]FuseWire, error) {
	sentinel := []byte(FuseSentinel)
	buf := make([]byte, 0, fuseReadSize)
	var base int64 // file offset of buf[0]
	var out []FuseWire
	eof := false
	for {
		if !eof {
			n, err := io.ReadFull(r, buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			switch {
			case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
				eof = true
			case err != nil:
				return nil, err
			}
		}
		// From carry on, bytes go on to the next round: a sentinel may
		// start in the last len(sentinel)-1 bytes.
		carry := len(buf)
		if !eof {
			carry = max(len(buf)-len(sentinel)+1, 0)
		}
		pos := 0
		for {
			i := bytes.Index(buf[pos:], sentinel)
			if i < 0 {
				break
			}
			at := pos + i
			hdr := at + len(sentinel)
			if hdr+2 > len(buf) || hdr+2+int(buf[hdr+1]) > len(buf) {
				if eof {
					return nil, fmt.Errorf("the fuse wire at offset %d is cut short by the end of the file", base+int64(at))
				}
				carry = at
				break
			}
			if len(out) == maxFuseWires {
				return nil, fmt.Errorf("more than %d fuse wires: not a binary Electron built", maxFuseWires)
			}
			n := int(buf[hdr+1])
			out = append(out, FuseWire{Offset: base + int64(at), Version: buf[hdr], Fuses: bytes.Clone(buf[hdr+2 : hdr+2+n])})
			pos = hdr
		}
		if eof {
			return out, nil
		}
		carry = max(carry, pos)
		n := copy(buf, buf[carry:])
		base += int64(carry)
		buf = buf[:n]
	}
}

// NodeCliInspect says whether the wires let SIGUSR1 open the main
// process's inspector. ok is true only when the fuse is proven enabled in
// every wire, or when there is no wire at all (not Electron 12+, where the
// fuse does not exist) or the wire is too short to have it (an Electron
// from before the fuse, whose SIGUSR1 always opens it). why says which.
// Anything unknown (another schema version, a removed fuse, a byte that is
// none of '0', '1', 'r', wires that disagree) is a refusal.
func NodeCliInspect(wires []FuseWire) (ok bool, why string) {
	if len(wires) == 0 {
		return true, "no Electron fuse wire in the binary"
	}
	state := byte(0)
	for _, w := range wires {
		if w.Version != 1 {
			return false, fmt.Sprintf("Electron fuse wire version %d is unknown to this ptyreclaim", w.Version)
		}
		s := byte(FuseEnabled) // a wire from before the fuse existed
		if len(w.Fuses) > fuseV1NodeCliInspect {
			s = w.Fuses[fuseV1NodeCliInspect]
		}
		if state != 0 && s != state {
			return false, "the binary's fuse wires disagree on nodeCliInspect"
		}
		state = s
	}
	switch state {
	case FuseEnabled:
		if len(wires[0].Fuses) <= fuseV1NodeCliInspect {
			return true, "Electron fuse wire predates nodeCliInspect"
		}
		return true, "Electron fuse nodeCliInspect is on"
	case FuseDisabled:
		return false, "Electron fuse nodeCliInspect is off: SIGUSR1 opens no inspector"
	case FuseRemoved:
		return false, "Electron fuse nodeCliInspect is marked removed: its behaviour is unknown"
	}
	return false, fmt.Sprintf("Electron fuse nodeCliInspect has the unknown state %q", state)
}

// FuseFile is the file that holds an Electron app's fuse wire, for the
// executable of its main process: in a macOS bundle, the Electron
// Framework next to Contents/MacOS; elsewhere the executable itself.
func FuseFile(exe string) string {
	dir, _ := path.Split(exe)
	dir = strings.TrimSuffix(dir, "/")
	if strings.HasSuffix(dir, ".app/Contents/MacOS") {
		return path.Join(path.Dir(dir), "Frameworks", "Electron Framework.framework", "Electron Framework")
	}
	return exe
}
