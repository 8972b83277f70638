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
// 1 failed, 2 usage mistake.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := root.New(stdin, stdout, stderr, getenv)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "graylanectl:", err)
	var usage *cli.UsageError
	// cobra reports an unknown subcommand itself, without a hook.
	if errors.As(err, &usage) || strings.HasPrefix(err.Error(), "unknown command") {
		return 2
	}
	return 1
}
