// Package gate runs the verification gates of a release step against the
// canary backends: a TCP connect to each, an HTTP GET to each with an
// expected status and expected JSON fields, or a command. An attempt is
// bounded by the gate's timeout; a failing gate is retried as often as it
// says, after a short pause.
//
// Gates run real connections and real commands; Options only says how to
// reach the world (a dialer and a command maker that may, for example,
// enter a network namespace).
package gate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/graylane/graylane/pkg/release"
)

// Options are the gate runner's ways to reach the world. The zero value
// uses this process's network namespace and runs commands directly.
type Options struct {
	// Dial opens the tcp and http gates' connections (default: a
	// net.Dialer's DialContext).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Command makes an exec gate's command (default: exec.CommandContext).
	// The runner sets its Stdin (none), Stdout and Stderr (one buffer)
	// and WaitDelay, puts it in a process group of its own unless
	// SysProcAttr says otherwise, and kills it when the attempt ends.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
	// RetryDelay is the pause before each retry (default DefaultRetryDelay).
	RetryDelay time.Duration
	// Commands are the named commands a gate's command: field may run
	// (the agent's gates.commands): an unknown name fails the gate.
	Commands map[string]Command
	// Env are variables ("GRAYLANE_RELEASE=auth-v2") added to the clean
	// environment of every command (see CleanPath).
	Env []string
	// Shadow runs a shadow gate's comparison (nil: shadow gates fail,
	// saying this runner has none): it captures or reads the requests,
	// replays them to the canary backends and says how many it compared
	// and how many answered differently, with a one-line detail.
	Shadow func(ctx context.Context, g release.ShadowGate, canary []netip.AddrPort) (ShadowOutcome, error)
}

// ShadowOutcome is what a shadow comparison found.
type ShadowOutcome struct {
	Compared, Differing int
	// Detail says what differed (a kind, an example), in one line.
	Detail string
}

// DefaultRetryDelay is the pause before a failed gate's next attempt.
const DefaultRetryDelay = time.Second

// Result is one gate's verdict.
type Result struct {
	Pass bool
	// Attempts is how many attempts ran (0: none, the context was done).
	Attempts int
	// Duration is the time from the first attempt to the verdict,
	// pauses between attempts included.
	Duration time.Duration
	// Detail says, in one line, what passed or what failed and where:
	// each failing backend with its reason, an HTTP status, a JSON path
	// that does not have its value, a command's exit status. It never
	// quotes what a backend or a command answered: that is Output's.
	Detail string
	// Output is what was answered: an exec gate's combined stdout and
	// stderr from its last attempt, at most MaxOutput bytes (the start
	// and the end) plus a marker saying what was cut; an http gate's
	// body excerpts, actual JSON values and redirects, a line per
	// failing backend. The API shows it to admins only.
	Output string
}

// Run runs gate g against the canary backends: up to 1+g.Retries
// attempts, each bounded by g.Timeout (release.DefaultGateTimeout when
// 0), with opts.RetryDelay between them. It stops early when ctx is done;
// the verdict is then a failure that says so.
func Run(ctx context.Context, g release.Gate, canary []netip.AddrPort, opts Options) Result {
	if opts.Dial == nil {
		var d net.Dialer
		opts.Dial = d.DialContext
	}
	if opts.Command == nil {
		opts.Command = exec.CommandContext
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = DefaultRetryDelay
	}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = release.DefaultGateTimeout
	}
	if c, ok := opts.Commands[g.Command]; ok && g.Command != "" && c.Timeout > 0 {
		timeout = min(timeout, c.Timeout)
	}
	start := time.Now()
	if ctx.Err() != nil {
		return Result{Detail: "not run: " + cancelled(ctx)}
	}
	var r Result
	for attempt := 1; ; attempt++ {
		a := newAttempt(ctx, timeout)
		r = a.run(g, canary, opts)
		a.cancel()
		r.Attempts = attempt
		if r.Pass || attempt > g.Retries || ctx.Err() != nil {
			break
		}
		if !sleep(ctx, opts.RetryDelay) {
			r.Detail = fmt.Sprintf("%s while waiting to retry; attempt %d: %s", cancelled(ctx), attempt, r.Detail)
			r.Duration = time.Since(start)
			return r
		}
	}
	switch {
	case r.Attempts > 1 && r.Pass:
		r.Detail += fmt.Sprintf(" (on attempt %d)", r.Attempts)
	case r.Attempts > 1:
		r.Detail += fmt.Sprintf(" (%d attempts)", r.Attempts)
	}
	r.Duration = time.Since(start)
	return r
}

// RunAll runs gates in order and stops at the first that fails. It
// returns the results of the gates it ran and whether all gates passed.
func RunAll(ctx context.Context, gates []release.Gate, canary []netip.AddrPort, opts Options) ([]Result, bool) {
	out := make([]Result, 0, len(gates))
	for _, g := range gates {
		r := Run(ctx, g, canary, opts)
		out = append(out, r)
		if !r.Pass {
			return out, false
		}
	}
	return out, true
}

// sleep waits d and reports whether it did, or false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// attempt is one try of a gate: its context (the caller's, bounded by the
// gate's timeout) and how to say why it ended early.
type attempt struct {
	parent  context.Context
	ctx     context.Context
	cancel  context.CancelFunc
	timeout time.Duration
}

func newAttempt(parent context.Context, timeout time.Duration) *attempt {
	ctx, cancel := context.WithTimeout(parent, timeout)
	return &attempt{parent: parent, ctx: ctx, cancel: cancel, timeout: timeout}
}

// stopped reports whether the attempt's time is up or the caller
// cancelled it, and says which.
func (a *attempt) stopped() (string, bool) {
	switch {
	case a.parent.Err() != nil:
		return cancelled(a.parent), true
	case a.ctx.Err() != nil:
		return fmt.Sprintf("timed out after %v (the gate's timeout)", a.timeout), true
	}
	return "", false
}

// why says why a check failed, without repeating the backend's address.
func (a *attempt) why(err error) string {
	if s, ok := a.stopped(); ok {
		return s
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err // "connect: connection refused"
	}
	return err.Error()
}

func cancelled(ctx context.Context) string {
	return "cancelled (" + context.Cause(ctx).Error() + ")"
}

func (a *attempt) run(g release.Gate, canary []netip.AddrPort, opts Options) Result {
	switch {
	case g.TCP != nil:
		return a.eachBackend(canary, "connected to", func(b netip.AddrPort) error {
			c, err := opts.Dial(a.ctx, "tcp", b.String())
			if err != nil {
				return errors.New(a.why(err))
			}
			c.Close()
			return nil
		})
	case g.HTTP != nil:
		return a.httpGate(g.HTTP, canary, opts.Dial)
	case g.Command != "":
		c, ok := opts.Commands[g.Command]
		if !ok {
			return Result{Detail: fmt.Sprintf("no command %q in this node's gates.commands: add it to the agent config of every node", g.Command)}
		}
		return a.execGate(c, opts)
	case len(g.Exec) > 0:
		return a.execGate(Command{Argv: g.Exec}, opts)
	case g.Shadow != nil:
		return a.shadowGate(*g.Shadow, canary, opts.Shadow)
	}
	return Result{Detail: "the gate checks nothing: give it tcp, http, command, exec or shadow"}
}

// shadowGate passes when the canary answered the replayed requests like
// the recorded ones, but for at most MaxDiffering of them, and at least
// one was compared.
func (a *attempt) shadowGate(g release.ShadowGate, canary []netip.AddrPort, run func(context.Context, release.ShadowGate, []netip.AddrPort) (ShadowOutcome, error)) Result {
	if run == nil {
		return Result{Detail: "shadow gates need an agent to capture and replay: none here"}
	}
	o, err := run(a.ctx, g, canary)
	if err != nil {
		return Result{Detail: a.why(err)}
	}
	if o.Compared == 0 {
		return Result{Detail: "no request to compare: " + o.Detail}
	}
	// Both in basis points: differing/compared <= MaxDiffering/10000.
	pass := uint64(o.Differing)*10000 <= uint64(g.MaxDiffering)*uint64(o.Compared)
	verdict := "at most"
	if !pass {
		verdict = "more than"
	}
	detail := fmt.Sprintf("%d of %d compared answers differ (%.2f%%), %s the %s allowed", o.Differing, o.Compared,
		100*float64(o.Differing)/float64(o.Compared), verdict, g.MaxDiffering)
	if o.Detail != "" {
		detail += "; " + o.Detail
	}
	return Result{Pass: pass, Detail: detail}
}

// eachBackend runs check on every canary backend at once; all must pass.
// ok says what was done when they all passed ("connected to").
func (a *attempt) eachBackend(canary []netip.AddrPort, ok string, check func(netip.AddrPort) error) Result {
	if len(canary) == 0 {
		return Result{Detail: "the canary pool has no backends to check"}
	}
	errs := make([]error, len(canary))
	var wg sync.WaitGroup
	for i, b := range canary {
		if !b.IsValid() || b.Port() == 0 {
			errs[i] = errors.New("not an address and port")
			continue
		}
		wg.Go(func() { errs[i] = check(b) })
	}
	wg.Wait()
	var bad, answers []string
	for i, err := range errs {
		if err == nil {
			continue
		}
		bad = append(bad, fmt.Sprintf("%s: %v", canary[i], err))
		var ae *answerError
		if errors.As(err, &ae) {
			answers = append(answers, fmt.Sprintf("%s: %s", canary[i], ae.answer))
		}
	}
	if len(bad) > 0 {
		return Result{Detail: fmt.Sprintf("%d of %d canary backends failed: %s", len(bad), len(canary), strings.Join(bad, "; ")),
			Output: strings.Join(answers, "\n")}
	}
	return Result{Pass: true, Detail: ok + " " + backends(len(canary))}
}

func backends(n int) string {
	if n == 1 {
		return "the only canary backend"
	}
	return fmt.Sprintf("all %d canary backends", n)
}
