// Package mirror is `graylanectl mirror SERVICE`: copy a share of a
// service's flows, both directions, to an interface or to the agent's
// capture ring, or stop.
package mirror

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// New returns the mirror command.
func New(env *cli.Env) *cobra.Command {
	var wait cli.Wait
	var f flags
	cmd := &cobra.Command{
		Use:   "mirror SERVICE (--percent P --to IFACE|capture [--snaplen N] | --off)",
		Short: "Mirror a share of a service's flows to an interface or the capture ring",
		Long: `Copies a share of the service's flows, whole flows in both directions, to an
interface on every node, or to the agent's capture ring with --to capture
(read it with graylanectl capture). A flow is chosen at its first packet;
--percent takes up to two decimals: 1, 1% and 0.25% are all fine.
--snaplen keeps the first N bytes (64 to 65535) of each copy instead of the
whole packet. --off stops mirroring. This is the service's spec.mirror:
the next apply of its manifest replaces it.`,
		Example: "  graylanectl mirror auth --percent 1% --to mirror0\n" +
			"  graylanectl mirror auth --percent 0.5 --to capture --snaplen 256 --wait\n" +
			"  graylanectl mirror auth --off",
		Args: cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			// Checked here first: a typo never reaches the cluster.
			req, what, err := f.request(cmd, name)
			if err != nil {
				return err
			}
			return env.Write(cmd.Context(), &wait, what,
				func(ctx context.Context, c *api.Client, opts api.WriteOptions) (api.Write, error) {
					return c.SetMirror(ctx, name, req, opts)
				})
		},
	}
	cmd.Flags().StringVar(&f.percent, "percent", "", "share of the service's flows to copy, such as 1%")
	cmd.Flags().StringVar(&f.to, "to", "", "interface to copy them to, on every node, or capture (the agent's capture ring)")
	cmd.Flags().Uint32Var(&f.snaplen, "snaplen", 0, "keep the first `N` bytes of each copy, 64 to 65535 (default: the whole packet)")
	cmd.Flags().BoolVar(&f.off, "off", false, "stop mirroring the service")
	wait.AddFlags(cmd)
	return cmd
}

// flags are the mirror's own flags.
type flags struct {
	percent, to string
	snaplen     uint32
	off         bool
}

// request checks the flags and returns the request they make and how the
// write is reported.
func (f *flags) request(cmd *cobra.Command, name string) (api.MirrorRequest, string, error) {
	set := func(flag string) bool { return cmd.Flags().Changed(flag) }
	on := set("percent") || set("to") || set("snaplen")
	switch {
	case f.off && on:
		return api.MirrorRequest{}, "", cli.Usagef("mirror: --off takes no other flag: give --off alone, or --percent and --to")
	case f.off:
		return api.MirrorRequest{Off: true}, "mirroring of " + name + " stopped", nil
	case !on:
		return api.MirrorRequest{}, "", cli.Usagef("mirror: give --percent P and --to IFACE|capture to mirror, or --off to stop")
	case !set("percent"):
		return api.MirrorRequest{}, "", cli.Usagef("mirror: --percent is required with --to: the share of flows to copy, such as 1%%")
	case !set("to"):
		return api.MirrorRequest{}, "", cli.Usagef("mirror: --to is required with --percent: an interface name or %s", service.MirrorToCapture)
	}
	w, err := service.ParseWeight(f.percent)
	if err != nil {
		return api.MirrorRequest{}, "", cli.Usagef("mirror: --percent: %v", err)
	}
	m := service.Mirror{Percent: w, To: f.to, Snaplen: f.snaplen}
	if err := m.Validate(); err != nil {
		return api.MirrorRequest{}, "", cli.Usagef("mirror: %s", service.FieldMessages(err, "spec.mirror.", "--"))
	}
	what := fmt.Sprintf("mirror of %s set to %s of its flows to %s", name, w, f.to)
	if m.Snaplen > 0 {
		what += fmt.Sprintf(", %d bytes of each packet", m.Snaplen)
	}
	return api.MirrorRequest{Percent: w.String(), To: f.to, Snaplen: m.Snaplen}, what, nil
}
