// Package shadow is `graylanectl shadow SERVICE --from FILE`: replay the
// requests of a capture to the service's canary (or stable, or any
// address) and report how its answers differ from the recorded ones.
package shadow

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/shadow"
)

// New returns the shadow command.
func New(env *cli.Env) *cobra.Command {
	var f flags
	cmd := &cobra.Command{
		Use:   "shadow SERVICE --from FILE [--to canary|stable|ADDR:PORT] [--speed X|max] [--methods GET,HEAD] [--ignore-header NAME ...]",
		Short: "Replay captured requests to the canary, diff its answers against the recorded ones",
		Long: `Reads the HTTP/1.x request → response pairs (and UDP request → answer
pairs) of a capture with payload (graylanectl capture SERVICE --payload -w
FILE, or any pcap or pcapng), replays each request over a fresh connection
to the service's canary backends (--to stable: its stable backends;
--to ADDR:PORT: that address) with the capture's pacing (--speed 2: twice
as fast; max: no pacing), and compares each answer with the recorded one:
status, headers (not the volatile ones: Date, Age, Expires, Last-Modified,
ETag, Server-Timing, Set-Cookie, tracing ids, Content-Length, …; add more
with --ignore-header) and body (JSON as values: key order and spacing do
not count). A client's requests all go to the same backend.

Only GET, HEAD, OPTIONS and TRACE are replayed unless --methods names the
methods to replay: replaying POST, PUT, PATCH or DELETE changes the
target's state. The requests are sent from this host: it must reach the
backends.

Noise: a few differences may be the application's own (time, random
ids). Run the same with --to stable: what stable differs from its own
recording is the noise floor of the comparison.`,
		Example: "  graylanectl capture auth --payload --duration 1m -w auth.pcapng\n" +
			"  graylanectl shadow auth --from auth.pcapng\n" +
			"  graylanectl shadow auth --from auth.pcapng --to stable -o json\n" +
			"  graylanectl shadow auth --from auth.pcapng --speed max --ignore-header X-Build",
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts, err := f.options(cmd)
			if err != nil {
				return err
			}
			file, err := os.Open(f.from)
			if err != nil {
				return cli.Usagef("shadow: --from: %v", err)
			}
			defer file.Close()
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			return run(cmd.Context(), env, c, args[0], &f, file, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "the capture to replay: pcap or pcapng with payload (required)")
	fl.StringVar(&f.to, "to", "canary", "where to replay: canary, stable (the service's backends) or ADDR:PORT")
	fl.StringVar(&f.speed, "speed", "1", "pacing: `X` times the capture's speed, or max for no pacing")
	fl.StringSliceVar(&f.methods, "methods", nil, "the HTTP methods to replay (default GET,HEAD,OPTIONS,TRACE)")
	fl.StringSliceVar(&f.ignore, "ignore-header", nil, "a response header not to compare (repeat, or NAME,NAME)")
	fl.IntVar(&f.examples, "examples", 10, "show up to `N` differences")
	fl.DurationVar(&f.timeout, "replay-timeout", 10*time.Second, "bound on each replayed request")
	return cmd
}

// flags are the shadow's flags.
type flags struct {
	from, to, speed string
	methods, ignore []string
	examples        int
	timeout         time.Duration
}

var token = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// options checks the flags and returns the run's options, all but the
// targets. Each mistake is a usage error naming its flag.
func (f *flags) options(cmd *cobra.Command) (shadow.Options, error) {
	o := shadow.Options{Examples: f.examples, Timeout: f.timeout, IgnoreHeaders: f.ignore}
	if f.examples == 0 {
		o.Examples = -1
	}
	switch {
	case f.from == "":
		return o, cli.Usagef("shadow: say which capture to replay: --from FILE (graylanectl capture SERVICE --payload -w FILE makes one)")
	case f.to == "":
		return o, cli.Usagef("shadow: --to: give canary, stable or ADDR:PORT")
	case f.examples < 0:
		return o, cli.Usagef("shadow: --examples %d: give 0 or more", f.examples)
	case f.timeout <= 0:
		return o, cli.Usagef("shadow: --replay-timeout %v: give a positive duration, such as 10s", f.timeout)
	}
	if f.speed == "max" {
		o.AsFastAsPossible = true
	} else if x, err := strconv.ParseFloat(f.speed, 64); err != nil || !(x > 0) || x > 1e6 {
		return o, cli.Usagef("shadow: --speed %s: give a factor above 0, such as 1 (the capture's pacing) or 2, or max", f.speed)
	} else {
		o.Speed = x
	}
	for _, m := range f.methods {
		if !token.MatchString(m) {
			return o, cli.Usagef("shadow: --methods: %q is not an HTTP method", m)
		}
		o.Methods = append(o.Methods, strings.ToUpper(m))
	}
	if cmd.Flags().Changed("methods") && len(o.Methods) == 0 {
		return o, cli.Usagef("shadow: --methods: give one or more methods, such as GET,HEAD")
	}
	for _, h := range f.ignore {
		if !token.MatchString(h) {
			return o, cli.Usagef("shadow: --ignore-header: %q is not a header name", h)
		}
	}
	if f.to != "canary" && f.to != "stable" {
		if _, err := netip.ParseAddrPort(f.to); err != nil {
			return o, cli.Usagef("shadow: --to %s: give canary, stable or ADDR:PORT, such as 10.2.0.11:8080 or [fd00::1]:80", f.to)
		}
	}
	return o, nil
}

// targets resolves --to with the service's backends.
func targets(svc api.Service, to string) ([]netip.AddrPort, error) {
	pool := svc.Canary
	switch to {
	case "canary":
	case "stable":
		pool = svc.Stable
	default:
		ap, err := netip.ParseAddrPort(to)
		return []netip.AddrPort{ap}, err
	}
	if len(pool) == 0 {
		return nil, fmt.Errorf("service %s has no %s backends: give --to stable, or --to ADDR:PORT", svc.Name, to)
	}
	var out []netip.AddrPort
	for _, b := range pool {
		ap, err := netip.ParseAddrPort(b.Address)
		if err != nil {
			return nil, fmt.Errorf("service %s: %s backend %q: %w", svc.Name, to, b.Address, err)
		}
		out = append(out, ap)
	}
	return out, nil
}

// run resolves the target, reads the capture, replays it and prints the
// report.
func run(ctx context.Context, env *cli.Env, c *api.Client, name string, f *flags, file *os.File, opts shadow.Options) error {
	svc, err := c.Service(ctx, name)
	if err != nil {
		return env.Explain(err)
	}
	opts.Targets, err = targets(svc, f.to)
	if err != nil {
		return err
	}
	opts.Protocol = shadow.HTTP
	if svc.Protocol == "udp" {
		opts.Protocol = shadow.UDP
	}
	exchanges, stats, err := shadow.Read(file)
	if err != nil {
		return fmt.Errorf("read %s: %w", f.from, err)
	}
	if len(exchanges) == 0 {
		return fmt.Errorf("read %s: no request in it (%d packets, %d TCP streams, %d not HTTP/1.x): nothing to replay", f.from, stats.Packets, stats.TCPStreams, stats.NotHTTP)
	}
	rep, err := shadow.Run(ctx, exchanges, opts)
	interrupted := errors.Is(err, context.Canceled)
	if err != nil && !interrupted {
		return err
	}
	return show(env, newResult(name, f, opts.Targets, stats, rep, interrupted))
}
