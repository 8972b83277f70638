package root

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/graylane/graylane/ctl/cli"
)

// Run runs graylanectl with args until ctx is done and returns its exit
// code: 0 done, 1 failed, 2 usage mistake. It is main without the process
// around it (signals, os.Exit), so the tests run the whole CLI in-process.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	cmd := New(stdin, stdout, stderr, getenv)
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
