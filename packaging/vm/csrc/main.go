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
// to keep in step here. The source is a testproc constant or a string
// constant of the calling package (its test files included).
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

// testprocOwn are the programs testproc builds by itself (not through
// BuildC), by name, with their source constants: StartHostileFUSE's server.
var testprocOwn = map[string]string{"hostilefs": "hostileFUSESrc"}

// source is where a program's C text is: a string constant in a directory.
type source struct{ dir, name string }

func (s source) String() string { return filepath.Base(s.dir) + "." + s.name }

func run(root, out string) error {
	testproc := filepath.Join(root, "reclaim", "internal", "testproc")
	uses := map[string]source{} // program name -> its constant
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules" || d.Name() == "dist") {
			return filepath.SkipDir
		}
		// The tests of these run on the amd64 host only (they need Node,
		// GLib and a compiler at test time; see arm64-tests.sh).
		if rel, _ := filepath.Rel(root, path); d.IsDir() && (rel == filepath.Join("reclaim", "inspector") || rel == filepath.Join("reclaim", "runtimes")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		return buildCalls(path, testproc, uses)
	})
	if err != nil {
		return err
	}
	if len(uses) == 0 {
		return fmt.Errorf("no testproc.BuildC calls found under %s", root)
	}
	// Programs testproc builds itself, with other flags than BuildC's.
	for name, c := range testprocOwn {
		uses[name] = source{testproc, c}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(uses))
	for n := range uses {
		names = append(names, n)
	}
	sort.Strings(names)
	consts := map[string]map[string]string{} // dir -> its string constants
	for _, n := range names {
		u := uses[n]
		if consts[u.dir] == nil {
			// testproc's own tests are not its constants; a calling
			// package's tests are where its constants live.
			c, err := stringConsts(u.dir, u.dir != testproc)
			if err != nil {
				return err
			}
			consts[u.dir] = c
		}
		src, ok := consts[u.dir][u.name]
		if !ok {
			return fmt.Errorf("BuildC(%q) uses %s, which is not a string constant", n, u)
		}
		if err := os.WriteFile(filepath.Join(out, n+".c"), []byte(src), 0o644); err != nil {
			return err
		}
		fmt.Printf("%s.c from %s\n", n, uses[n])
	}
	return nil
}

// stringConsts returns the string constants of the Go files in dir by
// name, those of its _test.go files too when tests is set.
func stringConsts(dir string, tests bool) (map[string]string, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, dir, func(fi fs.FileInfo) bool { return tests || !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
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

// buildCalls records testproc.BuildC(_, "name", testproc.Const) and
// testproc.BuildC(_, "name", localConst) calls in path.
func buildCalls(path, testproc string, uses map[string]source) error {
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
		var src source
		switch a := call.Args[2].(type) {
		case *ast.SelectorExpr:
			if isSel(a, "testproc", a.Sel.Name) {
				src = source{testproc, a.Sel.Name}
			}
		case *ast.Ident:
			src = source{filepath.Dir(path), a.Name}
		}
		if !ok || lit.Kind != token.STRING || src.name == "" {
			bad = fmt.Errorf("%s: a BuildC call without a literal name and a constant (testproc's or the package's own)", path)
			return true
		}
		name, _ := strconv.Unquote(lit.Value)
		if prev, seen := uses[name]; seen && prev != src {
			bad = fmt.Errorf("%s: program %q is built from both %s and %s", path, name, prev, src)
		}
		uses[name] = src
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
