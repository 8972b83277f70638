// Command graylanectl controls a Graylane cluster through any agent's API.
// See `graylanectl --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/root"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv))
}

// run runs graylanectl with args and returns its exit code: 0 done,
// 1 failed, 2 usage mistake. It is main without the process around it, so
// the tests run the whole CLI in-process.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := root.New(stdin, stdout, stderr, getenv)
	cmd.SetArgs(args)
	// ExecuteC returns the command that failed, for the --help hint.
	failed, err := cmd.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "graylanectl:", err)
	var usage *cli.UsageError
	// Every command's Args and flag errors become UsageError; the prefix
	// check is a net for a cobra error that bypasses both hooks.
	if errors.As(err, &usage) || strings.HasPrefix(err.Error(), "unknown command") {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", failed.CommandPath())
		return 2
	}
	return 1
}
