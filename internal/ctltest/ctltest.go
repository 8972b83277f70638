// Package ctltest tests graylanectl as a user runs it: arguments in,
// output and exit code out, compared with golden files (go test -update
// rewrites them). The agent is a fake serving fixed answers on a unix
// socket: these test the CLI, not the cluster (agent/cluster_e2e_test.go
// runs the real thing).
//
// Each of graylanectl's command packages (ctl/get, ctl/pin, …) keeps its
// cases and golden files beside it and runs them through this package.
// To rewrite the golden files of every command, give -update to the
// packages that import this one (ctl/printer has no such flag):
//
//	go test ./ctl/apply ./ctl/capture ./ctl/get ./ctl/members ./ctl/mirror \
//		./ctl/pin ./ctl/remove ./ctl/rollout ./ctl/root ./ctl/setweight \
//		./ctl/status -update
//
// (make golden finds them.)
package ctltest

import (
	"context"
	"flag"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graylane/graylane/ctl/root"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// Serve starts a fake agent on a unix socket for the length of the test
// and returns it and its --server.
func Serve(t *testing.T) (*Agent, string) {
	f := &Agent{}
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: f.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return f, "unix://" + sock
}

// Run runs graylanectl in-process, as root.Run does for the binary, with
// stdin and the environment env, and returns what it printed (stdout and
// stderr together) and its exit code.
func Run(args []string, stdin string, env map[string]string) (string, int) {
	var out strings.Builder
	code := root.Run(context.Background(), args, strings.NewReader(stdin), &out, &out, func(k string) string { return env[k] })
	return out.String(), code
}

// Golden compares got with the file dir/name.golden, or rewrites the file
// when the test runs with -update.
func Golden(t *testing.T, dir, name, got string) {
	t.Helper()
	path := filepath.Join(dir, name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (go test -update rewrites it):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}
