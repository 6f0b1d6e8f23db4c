package inspector

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// machoFixture builds a minimal 64-bit Mach-O (mach-o/loader.h): a header,
// one LC_SYMTAB command, its nlist_64 entries and string table. Each
// symbol is a name and its n_type.
func machoFixture(cpu uint32, syms map[string]uint8) []byte {
	le := binary.LittleEndian
	var strs bytes.Buffer
	strs.WriteByte(0) // index 0 is the empty name
	type entry struct {
		strx uint32
		typ  uint8
	}
	var entries []entry
	for _, name := range []string{"_main", machoNodeSymbol, "_other"} {
		typ, ok := syms[name]
		if !ok {
			continue
		}
		entries = append(entries, entry{uint32(strs.Len()), typ})
		strs.WriteString(name)
		strs.WriteByte(0)
	}
	const hdr, symtabCmd = 32, 24
	symoff := uint32(hdr + symtabCmd)
	stroff := symoff + uint32(16*len(entries))
	b := make([]byte, stroff)
	le.PutUint32(b[0:], 0xfeedfacf) // MH_MAGIC_64
	le.PutUint32(b[4:], cpu)
	le.PutUint32(b[12:], 2)         // MH_EXECUTE
	le.PutUint32(b[16:], 1)         // ncmds
	le.PutUint32(b[20:], symtabCmd) // sizeofcmds
	c := b[hdr:]
	le.PutUint32(c[0:], 0x2) // LC_SYMTAB
	le.PutUint32(c[4:], symtabCmd)
	le.PutUint32(c[8:], symoff)
	le.PutUint32(c[12:], uint32(len(entries)))
	le.PutUint32(c[16:], stroff)
	le.PutUint32(c[20:], uint32(strs.Len()))
	for i, e := range entries {
		n := b[symoff+uint32(16*i):]
		le.PutUint32(n[0:], e.strx)
		n[4] = e.typ
		n[5] = 1 // n_sect
		le.PutUint64(n[8:], 0x100000000+uint64(i))
	}
	return append(b, strs.Bytes()...)
}

// fatFixture wraps thin files in a universal binary (mach-o/fat.h: the
// header and fat_arch entries are big-endian; slices are 4 KiB aligned).
func fatFixture(slices ...[]byte) []byte {
	be := binary.BigEndian
	out := make([]byte, 8+20*len(slices))
	be.PutUint32(out[0:], 0xcafebabe)
	be.PutUint32(out[4:], uint32(len(slices)))
	for i, s := range slices {
		for len(out)%4096 != 0 {
			out = append(out, 0)
		}
		a := out[8+20*i:]
		be.PutUint32(a[0:], binary.LittleEndian.Uint32(s[4:])) // cputype
		be.PutUint32(a[8:], uint32(len(out)))                  // offset
		be.PutUint32(a[12:], uint32(len(s)))                   // size
		be.PutUint32(a[16:], 12)                               // align: 2^12
		out = append(out, s...)
	}
	return out
}

func TestMachoExports(t *testing.T) {
	const arm64, amd64 = 0x0100000c, 0x01000007
	exported := machoNExt | machoNSect
	for _, c := range []struct {
		name string
		file []byte
		want bool
	}{
		{"node exports it", machoFixture(arm64, map[string]uint8{"_main": uint8(exported), machoNodeSymbol: uint8(exported)}), true},
		{"a program that only calls it (undefined)", machoFixture(arm64, map[string]uint8{machoNodeSymbol: machoNExt}), false},
		{"a private symbol of that name", machoFixture(arm64, map[string]uint8{machoNodeSymbol: machoNSect}), false},
		{"a debugger stab of that name", machoFixture(arm64, map[string]uint8{machoNodeSymbol: 0x24 | machoNExt | machoNSect}), false},
		{"not node", machoFixture(amd64, map[string]uint8{"_main": uint8(exported), "_other": uint8(exported)}), false},
		{"universal, exported in one slice", fatFixture(
			machoFixture(amd64, map[string]uint8{"_main": uint8(exported)}),
			machoFixture(arm64, map[string]uint8{machoNodeSymbol: uint8(exported)})), true},
		{"universal, in none", fatFixture(
			machoFixture(amd64, map[string]uint8{"_main": uint8(exported)}),
			machoFixture(arm64, map[string]uint8{"_other": uint8(exported)})), false},
	} {
		got, err := machoExports(bytes.NewReader(c.file), machoNodeSymbol)
		if err != nil || got != c.want {
			t.Errorf("%s: %v, %v; want %v", c.name, got, err, c.want)
		}
	}
	if _, err := machoExports(bytes.NewReader([]byte("#!/bin/sh\n")), machoNodeSymbol); err == nil {
		t.Error("a script read as Mach-O")
	}
}
