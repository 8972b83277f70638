// Package cli holds what every graylanectl subcommand shares: where input
// and output go, the output format, how to reach the agent, how a usage
// mistake is told from a failure, and how the agent's refusals are
// explained to the user.
package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
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
	// Server and Timeout are the global flags' values, for messages.
	Server  string
	Timeout time.Duration
	// Connect returns a client of the agent, with every request bounded
	// by at least minTimeout (longer than a --wait).
	Connect func(minTimeout time.Duration) (*api.Client, error)
}

// Print writes v in the chosen format; table renders it for people.
func (e *Env) Print(v any, table func(t *printer.Tab)) error {
	return printer.Print(e.Out, e.Format, v, table)
}

// TokenEnv is the environment variable --token defaults to.
const TokenEnv = "GRAYLANE_TOKEN"

// UsageError is a mistake in how graylanectl was called: exit code 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// Args turns cobra's argument checks into usage errors that show the
// command's synopsis. Every command sets Args through it: a command
// without Args gets cobra's own checks, whose errors would exit 1.
func Args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		err := check(cmd, args)
		if err == nil {
			return nil
		}
		// A word after a command that has subcommands is a mistyped
		// subcommand, not an argument.
		if cmd.HasAvailableSubCommands() && len(args) > 0 {
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if cmd.SuggestionsMinimumDistance <= 0 {
				cmd.SuggestionsMinimumDistance = 2 // cobra's own default, set lazily
			}
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += "; did you mean " + quoteJoin(s, " or ") + "?"
			}
			return &UsageError{errors.New(msg)}
		}
		// cobra.NoArgs says "unknown command" even where no command is
		// expected; say what is wrong instead.
		if strings.HasPrefix(err.Error(), "unknown command") {
			err = fmt.Errorf("takes no arguments, got %q", strings.Join(args, " "))
		}
		return Usagef("%s%v (usage: %s)", Where(cmd), err, cmd.UseLine())
	}
}

func quoteJoin(words []string, sep string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = fmt.Sprintf("%q", w)
	}
	return strings.Join(q, sep)
}

// Where prefixes a usage message with the subcommand it is about ("pin
// add: "), or nothing for graylanectl itself.
func Where(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return ""
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ") + ": "
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

// Write makes a write with the wait flags: it checks them, connects,
// sends, explains a refusal, and reports the write as what.
func (e *Env) Write(ctx context.Context, wait *Wait, what string, send func(context.Context, *api.Client, api.WriteOptions) (api.Write, error)) error {
	opts, err := wait.Options()
	if err != nil {
		return err
	}
	c, err := e.Connect(wait.MinTimeout())
	if err != nil {
		return err
	}
	w, err := send(ctx, c, opts)
	if err != nil {
		return e.Explain(err)
	}
	return e.Wrote(what, w, wait.On)
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

// Explain turns an error from the agent's client into one line that says
// what went wrong and what to do about it.
func (e *Env) Explain(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		return explainAnswer(ae)
	}
	return e.explainTransport(err)
}

// explainAnswer adds what to do to the agent's refusals. The agent's
// message already names what is wrong; the status says whose move it is.
func explainAnswer(ae *api.Error) error {
	switch ae.Status {
	case http.StatusUnauthorized:
		return fmt.Errorf("%s (give a valid API token with --token or the %s environment variable)", ae.Message, TokenEnv)
	case http.StatusForbidden:
		return fmt.Errorf("%s (the token's tenant does not own it: use a token of its tenant, or an admin token)", ae.Message)
	case http.StatusServiceUnavailable:
		if strings.Contains(ae.Message, "retry") {
			return errors.New(ae.Message)
		}
		return fmt.Errorf("%s (the cluster cannot answer now: it has no leader, or this agent is cut off from it; retry in a few seconds, and see who is reachable with `graylanectl members`)", ae.Message)
	case http.StatusNotFound:
		if strings.HasPrefix(ae.Message, "no such API") {
			return fmt.Errorf("%s (the agent does not know this call: is it older than graylanectl?)", ae.Message)
		}
	}
	return errors.New(ae.Message)
}

// explainTransport names the agent that could not be reached and the
// likely cause. The client wraps the dial error with %w, so its cause is
// still there to be told apart.
func (e *Env) explainTransport(err error) error {
	unreachable := func(why, hint string) error {
		return fmt.Errorf("cannot reach the agent at %s: %s (%s)", e.Server, why, hint)
	}
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled):
		// Ctrl-C: a write already sent may have been committed.
		return errors.New("interrupted before the agent answered (a write may still have been committed: check with get or status)")
	case errors.Is(err, syscall.ENOENT):
		return unreachable("no such file", "is graylane-agent running? use --server")
	case errors.Is(err, syscall.ECONNREFUSED):
		return unreachable("connection refused", "is graylane-agent running and serving its API there? use --server")
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return unreachable("permission denied", "the socket is root's: run graylanectl as root, or use --server https://host:port with a token")
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return unreachable("no route to host", "check the address in --server")
	case errors.As(err, &dnsErr):
		return unreachable(fmt.Sprintf("unknown host %q", dnsErr.Name), "check the host in --server")
	case errors.As(err, &unknownCA):
		return unreachable("its certificate is not signed by a CA graylanectl trusts", "give the cluster's CA certificate with --ca FILE")
	case errors.As(err, &badHost):
		return unreachable(badHost.Error(), "put in --server a name or address the certificate is for")
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Errorf("the agent at %s did not answer in time (raise --timeout, now %v, or check that the agent is healthy)", e.Server, e.Timeout)
	case strings.HasPrefix(err.Error(), "cannot reach the agent"):
		return fmt.Errorf("%w (check --server, and that graylane-agent runs there)", err)
	}
	return err
}
