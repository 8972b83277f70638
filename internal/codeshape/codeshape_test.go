// Package codeshape keeps the codebase's shape from decaying: Go files
// stay short enough to read in one sitting and functions short enough to
// hold in one's head (issue 17). Generated code and table literals are
// exempt: a table-driven test is as long as its table.
package codeshape

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	maxFileLines = 600
	maxFuncLines = 80
)

// moduleRoot is the repository's top, two levels above this package.
const moduleRoot = "../.."

// goFiles lists the module's hand-written Go files: not generated
// bindings, not testdata (katran-bench is a module of its own).
func goFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(moduleRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "bin", "dist":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !generated(path) {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", moduleRoot, err)
	}
	if len(files) < 50 {
		t.Fatalf("found only %d Go files under %s: is the walk rooted right?", len(files), moduleRoot)
	}
	return files
}

// generated reports whether a file carries Go's generated-code marker.
func generated(path string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	return strings.Contains(string(data), "\n// Code generated ") || strings.HasPrefix(string(data), "// Code generated ")
}

func TestFileLength(t *testing.T) {
	for _, path := range goFiles(t) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(data), "\n"); n > maxFileLines {
			t.Errorf("%s: %d lines, more than %d: split it by concern", rel(path), n, maxFileLines)
		}
	}
}

func TestFunctionLength(t *testing.T) {
	for _, path := range goFiles(t) {
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", rel(path), err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			name, body := funcBody(n)
			if body == nil {
				return true
			}
			lines := span(fset, body) - tableLines(fset, body)
			if lines > maxFuncLines {
				t.Errorf("%s:%d: %s has %d lines (not counting table literals), more than %d: split it into named steps",
					rel(path), fset.Position(body.Lbrace).Line, name, lines, maxFuncLines)
			}
			return true
		})
	}
}

func funcBody(n ast.Node) (string, *ast.BlockStmt) {
	switch f := n.(type) {
	case *ast.FuncDecl:
		return f.Name.Name, f.Body
	case *ast.FuncLit:
		return "a function literal", f.Body
	}
	return "", nil
}

func span(fset *token.FileSet, n ast.Node) int {
	return fset.Position(n.End()).Line - fset.Position(n.Pos()).Line + 1
}

// tableLines counts the lines of the outermost slice and map literals in
// body that are longer than a few lines: the cases of a table-driven test,
// the rows of a lookup table.
func tableLines(fset *token.FileSet, body *ast.BlockStmt) int {
	total := 0
	ast.Inspect(body, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		switch lit.Type.(type) {
		case *ast.ArrayType, *ast.MapType:
			if l := span(fset, lit); l > 5 {
				total += l
			}
			return false // nested literals are part of this table
		}
		return true
	})
	return total
}

func rel(path string) string {
	if r, err := filepath.Rel(moduleRoot, path); err == nil {
		return r
	}
	return path
}
