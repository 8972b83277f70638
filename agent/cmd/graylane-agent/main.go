// Command graylane-agent steers canary releases in the kernel of a gateway
// host. See the README for the configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/graylane/graylane/agent"
	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/pkg/probe"
	"github.com/graylane/graylane/pkg/version"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var usage usageError
		if errors.As(err, &usage) {
			fmt.Fprintln(os.Stderr, "graylane-agent:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "graylane-agent:", err)
		os.Exit(1)
	}
}

type usageError struct{ error }

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "certs" {
		return certs(args[1:], stdout)
	}
	if len(args) > 0 && args[0] == "cleanup" {
		return cleanup(args[1:], stdout)
	}
	// A test hook: features named here count as missing (check shows the
	// fallback taken, the agent takes it).
	disabled := probe.Disabled(os.Getenv(DisableFeaturesEnv))
	if len(args) > 0 && args[0] == "check" {
		return check(args[1:], stdout, disabled)
	}
	fs := flag.NewFlagSet("graylane-agent", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: graylane-agent [flags]\n       graylane-agent check\n       graylane-agent cleanup [-config FILE]\n       graylane-agent certs [-dir DIR] NODE=HOST[,HOST...]...\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fs.SetOutput(stderr)
	configPath := fs.String("config", config.DefaultPath, "configuration file")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	if *showVersion {
		fmt.Fprintln(stderr, "graylane-agent", version.Version)
		return nil
	}
	log, err := newLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return usageError{err}
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	a, err := agent.New(ctx, cfg, *configPath, log, disabled)
	if err != nil {
		return err
	}
	runErr := a.Run(ctx)
	log.Info("stopping: the programs keep steering from their pins; the next start takes them over (graylane-agent cleanup removes them)")
	if err := a.Close(); err != nil {
		return errors.Join(runErr, fmt.Errorf("stop: %w", err))
	}
	return runErr
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("-log-level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format %q: use text or json", format)
}
