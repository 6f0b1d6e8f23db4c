package inspector

import (
	"debug/macho"
	"errors"
	"io"
)

// machoNodeSymbol is nodeSymbol as Mach-O spells C names.
const machoNodeSymbol = "_" + nodeSymbol

// Mach-O nlist type bits (mach-o/nlist.h).
const (
	machoNExt  = 0x01 // N_EXT: external
	machoNType = 0x0e // N_TYPE mask
	machoNSect = 0x0e // N_SECT: defined in a section
	machoNStab = 0xe0 // N_STAB: a debugger entry
)

// machoExports reports whether a Mach-O file, thin or universal, defines
// name as an external symbol in one of its slices: the executable of node
// and Electron's framework export node_module_register for native addons.
func machoExports(r io.ReaderAt, name string) (bool, error) {
	var files []*macho.File
	if fat, err := macho.NewFatFile(r); err == nil {
		for _, a := range fat.Arches {
			files = append(files, a.File)
		}
	} else if errors.Is(err, macho.ErrNotFat) {
		f, err := macho.NewFile(r)
		if err != nil {
			return false, err
		}
		files = append(files, f)
	} else {
		return false, err
	}
	for _, f := range files {
		if f.Symtab == nil {
			continue
		}
		for _, s := range f.Symtab.Syms {
			if s.Name == name && s.Type&machoNStab == 0 && s.Type&machoNExt != 0 && s.Type&machoNType == machoNSect {
				return true, nil
			}
		}
	}
	return false, nil
}
