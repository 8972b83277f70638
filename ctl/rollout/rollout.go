// Package rollout is `graylanectl rollout …`: start, pause, resume,
// promote and abort a CanaryRelease, and watch its status.
package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// New returns the rollout command.
func New(env *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Run CanaryReleases: start, pause, resume, promote, abort, status",
		Long: `A CanaryRelease (applied with graylanectl apply -f) moves its service's
canary weight step by step, runs its verification gates, and pulls the
canary back by itself when the kernel-measured P99 and error rate breach
its breaker's thresholds. These commands drive it by hand.`,
		Args: cli.Args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cli.Usagef("rollout: say start, pause, resume, promote, abort or status, and the release")
		},
	}
	for _, a := range []struct{ name, short string }{
		{"start", "Start a release from its first step"},
		{"pause", "Hold a running release where it is (a timed pause keeps what is left)"},
		{"resume", "Continue a paused release, or end a step's pause; failed gates run again"},
		{"promote", "End a release now with the canary at 100%"},
		{"abort", "End a release now with the canary at 0%"},
	} {
		cmd.AddCommand(action(env, a.name, a.short))
	}
	cmd.AddCommand(status(env))
	return cmd
}

func action(env *cli.Env, name, short string) *cobra.Command {
	var wait cli.Wait
	var full bool
	c := &cobra.Command{
		Use:   name + " RELEASE",
		Short: short,
		Args:  cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return env.Write(cmd.Context(), &wait, fmt.Sprintf("release %s: %s", args[0], past[name]),
				func(ctx context.Context, c *api.Client, opts api.WriteOptions) (api.Write, error) {
					if full {
						return c.PromoteFull(ctx, args[0], opts)
					}
					return c.ReleaseAction(ctx, args[0], name, opts)
				})
		},
	}
	wait.AddFlags(c)
	if name == "promote" {
		c.Flags().BoolVar(&full, "full", false, "also make the canary's backends the stable pool (weight 0): the old version waits in the canary pool")
	}
	return c
}

var past = map[string]string{"start": "started", "pause": "paused", "resume": "resumed", "promote": "promoted", "abort": "aborted"}

func status(env *cli.Env) *cobra.Command {
	var watch bool
	var every time.Duration
	c := &cobra.Command{
		Use:   "status RELEASE",
		Short: "Show a release: step, weight, breaker, the latest analysis and the history",
		Args:  cli.Args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if every < 100*time.Millisecond {
				return cli.Usagef("rollout status: --every %v: give at least 100ms", every)
			}
			c, err := env.Connect(0)
			if err != nil {
				return err
			}
			for {
				rel, err := c.Release(cmd.Context(), args[0])
				if err != nil {
					return env.Explain(err)
				}
				if err := env.Print(rel, func(t *printer.Tab) { table(t, rel) }); err != nil {
					return err
				}
				if !watch || rel.Phase == "promoted" || rel.Phase == "aborted" {
					return nil
				}
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(every):
				}
				if env.Format == printer.Table {
					fmt.Fprintln(env.Out)
				}
			}
		},
	}
	c.Flags().BoolVarP(&watch, "watch", "w", false, "print the status again until the release ends (Ctrl-C stops)")
	c.Flags().DurationVar(&every, "every", 2*time.Second, "with --watch: how often")
	return c
}

func table(t *printer.Tab, r api.Release) {
	phase := r.Phase
	if phase == "" {
		phase = "not started"
	}
	t.Line("release %s on service %s: %s", r.Name, r.Service, phase)
	if r.Reason != "" {
		t.Line("  why: %s", r.Reason)
	}
	if r.Phase != "" {
		t.Line("  step %d of %d; canary weight %s (steps reached %s); breaker %s", r.Step, len(r.Steps), r.Weight, r.StepWeight, r.Breaker)
		if r.Rate > 0 {
			t.Line("  at most %d new canary flows/s, cluster-wide", r.Rate)
		}
		if r.PauseUntil != nil {
			t.Line("  paused until %s", r.PauseUntil.UTC().Format(time.RFC3339))
		}
		if r.Holding {
			t.Line("  holding until `graylanectl rollout resume %s`", r.Name)
		}
	}
	if a := r.Analysis; a != nil {
		t.Line("  last analysis window, all nodes: canary %d responses, P99 %v, errors %.2f%%: %s",
			a.Responses, a.P99.Round(100*time.Microsecond), 100*a.ErrorRate, a.Verdict)
		t.Line("                                   stable %d responses, P99 %v, errors %.2f%%",
			a.StableResponses, a.StableP99.Round(100*time.Microsecond), 100*a.StableErrorRate)
	}
	t.Row("STEP", "DOES")
	for i, s := range r.Steps {
		mark := fmt.Sprint(i + 1)
		if r.Phase != "" && i+1 == r.Step {
			mark += " *"
		}
		t.Row(mark, s)
	}
	if len(r.History) > 0 {
		t.Line("history:")
		t.Row("AT", "EVENT", "STEP", "WEIGHT", "WHAT")
		for _, e := range r.History {
			t.Row(e.At.UTC().Format("15:04:05"), e.Kind, fmt.Sprint(e.Step), e.Weight, oneLine(e.Message))
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
