// Command graylanectl controls a Graylane cluster through any agent's API.
// See `graylanectl --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/graylane/graylane/ctl/root"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := root.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}
