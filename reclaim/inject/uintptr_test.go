package inject

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"testing"
)

// TestPointerUintptrOnlyInSyscalls: a pointer converted to uintptr is
// passed only straight to a unix.Syscall-style call. Through any other Go
// function the pointee may stay on the goroutine stack, a stack growth
// moves it, and the kernel reads or writes the stale copy: sigCode once
// read si_code 0 that way and a seccomp SIGSYS of ours reached the target.
func TestPointerUintptrOnlyInSyscalls(t *testing.T) {
	allowed := map[string]bool{"Syscall": true, "Syscall6": true, "RawSyscall": true, "RawSyscall6": true}
	for _, dir := range []string{".", "../procfs"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		fset := token.NewFileSet()
		for _, f := range files {
			af, err := parser.ParseFile(fset, f, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			ast.Inspect(af, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				sel, ok := call.Fun.(*ast.SelectorExpr)
				if ok && allowed[sel.Sel.Name] {
					if pkg, ok := sel.X.(*ast.Ident); ok && (pkg.Name == "unix" || pkg.Name == "syscall") {
						return true
					}
				}
				for _, a := range call.Args {
					if isPointerToUintptr(a) {
						t.Errorf("%s: a pointer converted to uintptr is passed to a Go function, not to a syscall", fset.Position(a.Pos()))
					}
				}
				return true
			})
		}
	}
}

// isPointerToUintptr matches uintptr(unsafe.Pointer(...)).
func isPointerToUintptr(e ast.Expr) bool {
	conv, ok := e.(*ast.CallExpr)
	if !ok || len(conv.Args) != 1 {
		return false
	}
	if id, ok := conv.Fun.(*ast.Ident); !ok || id.Name != "uintptr" {
		return false
	}
	inner, ok := conv.Args[0].(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := inner.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Pointer" {
		return false
	}
	pkg, ok := sel.X.(*ast.Ident)
	return ok && pkg.Name == "unsafe"
}
