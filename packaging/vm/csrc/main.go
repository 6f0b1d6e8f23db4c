// Command csrc writes the C test programs that the Go tests compile at run
// time (testproc.BuildC(t, "name", testproc.Source)) to DIR/name.c, so they
// can be cross-compiled ahead of time for a machine without gcc (the arm64
// VM, see packaging/vm/arm64-tests.sh) and found there through
// PTYRECLAIM_PREBUILT.
//
//	go run ./packaging/vm/csrc -out DIR
//
// It reads the sources, it does not import them: the calls and the constants
// are found with go/parser, so a new BuildC call is picked up without a list
// to keep in step here.
package main

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

func main() {
	out := flag.String("out", "", "directory for the .c files")
	root := flag.String("root", ".", "repository root")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: csrc -out DIR [-root REPO]")
		os.Exit(2)
	}
	if err := run(*root, *out); err != nil {
		fmt.Fprintln(os.Stderr, "csrc:", err)
		os.Exit(1)
	}
}

func run(root, out string) error {
	consts, err := stringConsts(filepath.Join(root, "reclaim", "internal", "testproc"))
	if err != nil {
		return err
	}
	uses := map[string]string{} // program name -> constant name
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "dist") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		return buildCalls(path, uses)
	})
	if err != nil {
		return err
	}
	if len(uses) == 0 {
		return fmt.Errorf("no testproc.BuildC calls found under %s", root)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(uses))
	for n := range uses {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		src, ok := consts[uses[n]]
		if !ok {
			return fmt.Errorf("BuildC(%q) uses testproc.%s, which is not a string constant", n, uses[n])
		}
		if err := os.WriteFile(filepath.Join(out, n+".c"), []byte(src), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s.c from testproc.%s\n", n, uses[n])
	}
	return nil
}

// stringConsts returns the package's string constants by name.
func stringConsts(dir string) (map[string]string, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		return nil, err
	}
	consts := map[string]string{}
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, decl := range f.Decls {
				g, ok := decl.(*ast.GenDecl)
				if !ok || g.Tok != token.CONST {
					continue
				}
				for _, spec := range g.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, name := range vs.Names {
						if i >= len(vs.Values) {
							continue
						}
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							s, err := strconv.Unquote(lit.Value)
							if err != nil {
								return nil, err
							}
							consts[name.Name] = s
						}
					}
				}
			}
		}
	}
	return consts, nil
}

// buildCalls records testproc.BuildC(_, "name", testproc.Const) calls in path.
func buildCalls(path string, uses map[string]string) error {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		return err
	}
	var bad error
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) != 3 || !isSel(call.Fun, "testproc", "BuildC") {
			return true
		}
		lit, ok := call.Args[1].(*ast.BasicLit)
		src, ok2 := call.Args[2].(*ast.SelectorExpr)
		if !ok || lit.Kind != token.STRING || !ok2 || !isSel(src, "testproc", src.Sel.Name) {
			bad = fmt.Errorf("%s: a BuildC call without a literal name and a testproc constant", path)
			return true
		}
		name, _ := strconv.Unquote(lit.Value)
		if prev, seen := uses[name]; seen && prev != src.Sel.Name {
			bad = fmt.Errorf("%s: program %q is built from both testproc.%s and testproc.%s", path, name, prev, src.Sel.Name)
		}
		uses[name] = src.Sel.Name
		return true
	})
	return bad
}

func isSel(e ast.Expr, pkg, name string) bool {
	s, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := s.X.(*ast.Ident)
	return ok && id.Name == pkg && s.Sel.Name == name
}
