// Package capture is `graylanectl capture SERVICE -w FILE`: a pcapng
// capture of a sample of a service's flows, both directions, streamed
// from the agent into a file or to stdout.
package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// DefaultDuration is how long a capture runs given neither --duration nor
// --count.
const DefaultDuration = 10 * time.Second

// New returns the capture command.
func New(env *cli.Env) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "capture SERVICE [--percent P] [--duration D] [--count N] [--node NODE|all] [--snaplen N | --payload] [--redact] -w FILE|-",
		Short: "Capture a sample of a service's flows into a pcapng file",
		Long: `Captures the packets of a sample of the service's flows, both directions,
as pcapng (Wireshark and tshark read it), into FILE (created mode 0600) or,
with -w -, to stdout. The capture ends after --duration or after --count
packets, whichever comes first; given neither, after 10s. Ctrl-C ends it
early: the file keeps what was written, readable up to its last whole
block. If the agent refuses, FILE is not touched; if the stream breaks
before its first byte, FILE is removed.

By default the agent keeps the headers of each packet: --snaplen N keeps
the first N bytes, --payload whole packets. --redact replaces the
addresses by pseudonyms. --percent defaults to the service's own mirror
to capture, if it has one, else 1%. The agent checks the request again,
and may refuse more than graylanectl does.`,
		Example: "  graylanectl capture auth -w auth.pcapng\n" +
			"  graylanectl capture auth --percent 5% --count 1000 --node all --redact -w auth.pcapng\n" +
			"  graylanectl capture auth --duration 1m --payload -w - | tshark -r -",
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			q, err := f.request(cmd)
			if err != nil {
				return err
			}
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			return run(cmd.Context(), env, c, args[0], q, f.out)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.out, "write", "w", "", "the pcapng file to write, or - for stdout (required)")
	fl.StringVar(&f.percent, "percent", "", "share of the service's new flows to sample, such as 5%")
	fl.DurationVar(&f.duration, "duration", 0, "stop after this long (default 10s when --count is not given either)")
	fl.IntVar(&f.count, "count", 0, "stop after `N` packets")
	fl.StringVar(&f.node, "node", "", "the node to capture on, or all (default: the agent graylanectl talks to)")
	fl.IntVar(&f.snaplen, "snaplen", 0, "keep the first `N` bytes of each packet, 64 to 65535")
	fl.BoolVar(&f.payload, "payload", false, "keep whole packets, payloads included")
	fl.BoolVar(&f.redact, "redact", false, "replace the addresses by pseudonyms")
	return cmd
}

// flags are the capture's flags.
type flags struct {
	out, percent, node string
	duration           time.Duration
	count, snaplen     int
	payload, redact    bool
}

// request checks the flags and returns the capture they ask for. Each
// mistake is a usage error naming its flag.
func (f *flags) request(cmd *cobra.Command) (api.CaptureRequest, error) {
	set := cmd.Flags().Changed
	q := api.CaptureRequest{Duration: f.duration, Count: f.count, Node: f.node, Snaplen: f.snaplen, Payload: f.payload, Redact: f.redact}
	switch {
	case f.out == "":
		return q, cli.Usagef("capture: say where the capture goes: -w FILE, or -w - for stdout")
	case set("snaplen") && set("payload"):
		return q, cli.Usagef("capture: --snaplen and --payload exclude each other: --payload keeps whole packets")
	case set("duration") && f.duration <= 0:
		return q, cli.Usagef("capture: --duration %v: give a positive duration, such as 30s", f.duration)
	case set("count") && f.count < 1:
		return q, cli.Usagef("capture: --count %d: give 1 or more packets", f.count)
	case set("snaplen") && (f.snaplen < service.MinSnaplen || f.snaplen > service.MaxSnaplen):
		return q, cli.Usagef("capture: --snaplen %d: give a number of bytes from %d to %d", f.snaplen, service.MinSnaplen, service.MaxSnaplen)
	case set("node") && f.node == "":
		return q, cli.Usagef("capture: --node: give a node's name, or all")
	}
	if set("percent") {
		w, err := service.ParseWeight(f.percent)
		if err != nil {
			return q, cli.Usagef("capture: --percent: %v", err)
		}
		if w == 0 {
			return q, cli.Usagef("capture: --percent %s: nothing would be captured: give a share such as 1%%", w)
		}
		q.Percent = w.String()
	}
	if !set("duration") && !set("count") {
		q.Duration = DefaultDuration
	}
	return q, nil
}

// result is what a capture wrote, for -o json|yaml.
type result struct {
	File        string `json:"file"`
	Bytes       int64  `json:"bytes"`
	Interrupted bool   `json:"interrupted,omitempty"`
}

// run asks for the capture and copies it to out ("-": stdout).
func run(ctx context.Context, env *cli.Env, c *api.Client, name string, q api.CaptureRequest, out string) error {
	stream, err := c.Capture(ctx, name, q)
	if err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted before the capture began: nothing was written")
		}
		return env.Explain(err)
	}
	defer stream.Close()
	if out == "-" {
		// stdout carries the capture: the report goes to stderr.
		n, err := io.Copy(env.Out, stream)
		if err := verdict(ctx, n, err, "stdout"); err != nil {
			return fmt.Errorf("the capture of %s: %w", name, err)
		}
		note := ""
		if ctx.Err() != nil {
			note = " (interrupted)"
		}
		fmt.Fprintf(env.Err, "captured %d bytes of %s%s\n", n, name, note)
		return nil
	}
	res, err := toFile(ctx, stream, out)
	if err != nil {
		return fmt.Errorf("the capture of %s: %w", name, err)
	}
	return env.Print(res, func(t *printer.Tab) {
		t.Line("wrote %d bytes of pcapng to %s", res.Bytes, res.File)
		if res.Interrupted {
			t.Line("interrupted: the file holds what arrived until then")
		}
	})
}

// toFile copies stream to the file path. A file to which nothing was
// written because the stream failed is removed; one that got bytes is
// kept, even when the stream broke or was interrupted after them.
func toFile(ctx context.Context, stream io.Reader, path string) (result, error) {
	res := result{File: path}
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return res, err
	}
	res.Bytes, err = io.Copy(file, stream)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	res.Interrupted = ctx.Err() != nil
	if err := verdict(ctx, res.Bytes, err, path); err != nil {
		if res.Bytes == 0 {
			os.Remove(path)
		}
		return res, err
	}
	return res, nil
}

// verdict judges a copy of a capture that ended with err after n bytes
// went to where: bytes interrupted by ctx are a capture stopped early, no
// bytes at all a failure, and bytes cut off by anything else a failure
// that leaves them where they went.
func verdict(ctx context.Context, n int64, err error, where string) error {
	interrupted := ctx.Err() != nil
	switch {
	case err == nil, interrupted && n > 0:
		return nil
	case interrupted:
		return errors.New("interrupted before any packet arrived: nothing was written")
	case n == 0:
		return fmt.Errorf("nothing was written: %w", err)
	}
	return fmt.Errorf("stopped after %d bytes: %w (%s keeps them, readable up to the last whole block)", n, err, where)
}
