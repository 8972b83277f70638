// Package cli holds what every graylanectl subcommand shares: where input
// and output go, the output format, how to reach the agent, how a usage
// mistake is told from a failure, and how the agent's refusals are
// explained to the user.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/api"
)

// Env is a command's world. The root command fills it in from the global
// flags before any subcommand runs.
type Env struct {
	In       io.Reader
	Out, Err io.Writer
	Format   printer.Format
	// Connect returns a client of the agent, with every request bounded
	// by at least minTimeout (longer than a --wait).
	Connect func(minTimeout time.Duration) (*api.Client, error)
}

// Print writes v in the chosen format; table renders it for people.
func (e *Env) Print(v any, table func(t *printer.Tab)) error {
	return printer.Print(e.Out, e.Format, v, table)
}

// UsageError is a mistake in how graylanectl was called: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// Args turns cobra's argument checks into usage errors that show the
// command's synopsis.
func Args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			if !cmd.HasParent() {
				return Usagef("%v (see 'graylanectl --help')", err)
			}
			return Usagef("%s: %v (usage: %s)", cmd.CommandPath(), err, cmd.UseLine())
		}
		return nil
	}
}

// Wait are the flags of a write that can wait for the kernels.
type Wait struct {
	On      bool
	Timeout time.Duration
}

// AddFlags adds --wait and --wait-timeout to cmd.
func (w *Wait) AddFlags(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&w.On, "wait", false, "return once every live node applied the change to its kernel")
	cmd.Flags().DurationVar(&w.Timeout, "wait-timeout", 5*time.Second, "how long --wait waits")
}

// Options are the API's write options for these flags.
func (w *Wait) Options() (api.WriteOptions, error) {
	if w.Timeout <= 0 || w.Timeout > 10*time.Minute {
		return api.WriteOptions{}, Usagef("--wait-timeout %v: give a duration between 1ms and 10m", w.Timeout)
	}
	return api.WriteOptions{WaitApplied: w.On, Timeout: w.Timeout}, nil
}

// MinTimeout is how long a request with these flags may take.
func (w *Wait) MinTimeout() time.Duration {
	if !w.On {
		return 0
	}
	return w.Timeout + 10*time.Second
}

// Wrote reports a write: its raft index and, with --wait, where it was
// applied. A write that some nodes did not apply in time is an error (the
// write itself is committed).
func (e *Env) Wrote(what string, w api.Write, wait bool) error {
	slices.Sort(w.Applied)
	slices.Sort(w.NotApplied)
	slices.Sort(w.Unreachable)
	err := e.Print(w, func(t *printer.Tab) {
		t.Line("%s (committed at index %d)", what, w.Index)
		if wait && len(w.Applied) > 0 {
			t.Line("applied on: %s", strings.Join(w.Applied, ", "))
		}
		if wait && len(w.Unreachable) > 0 {
			t.Line("not reachable (down or cut off; they apply it when back): %s", strings.Join(w.Unreachable, ", "))
		}
	})
	if err != nil {
		return err
	}
	if len(w.NotApplied) > 0 {
		return fmt.Errorf("not applied within the wait on: %s (the change is committed; they apply it when they catch up: check `graylanectl members`)",
			strings.Join(w.NotApplied, ", "))
	}
	return nil
}

// Explain adds what to do to an error from the agent.
func Explain(err error) error {
	var ae *api.Error
	if !errors.As(err, &ae) {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w (raise --timeout, or check that the agent is healthy)", err)
		}
		msg := err.Error()
		switch {
		case strings.Contains(msg, "certificate signed by unknown authority"):
			return fmt.Errorf("%w (give the cluster's CA certificate with --ca)", err)
		case strings.Contains(msg, "cannot reach the agent"):
			return fmt.Errorf("%w (point --server at the agent: unix:///path/to/api.sock or https://host:port)", err)
		}
		return err
	}
	switch ae.Status {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s (give an API token with --token or GRAYLANE_TOKEN)", ae.Message)
	case http.StatusForbidden:
		return fmt.Errorf("%s (the token's tenant does not own this; use a token of its tenant or an admin token)", ae.Message)
	case http.StatusServiceUnavailable:
		return fmt.Errorf("%s", ae.Message)
	}
	return errors.New(ae.Message)
}
