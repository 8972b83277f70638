// Package gate runs the verification gates of a release step against the
// canary backends: a TCP connect to each, an HTTP GET with an expected
// status and expected JSON fields, or a command. An attempt is bounded by
// the gate's timeout; a failing gate is retried as often as it says.
package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/pkg/release"
)

// Options are the gate runner's connections to the world.
type Options struct {
	// Dial opens connections (default: a net.Dialer in this process's
	// network namespace).
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// RetryDelay is the pause between attempts (default 1s).
	RetryDelay time.Duration
}

// Result is one gate's verdict.
type Result struct {
	Pass     bool
	Attempts int
	Duration time.Duration
	// Detail says what passed or what failed, and where.
	Detail string
	// Output is an exec gate's combined output (truncated).
	Output string
}

// MaxOutput bounds the output kept from an exec gate.
const MaxOutput = 4096

// Run runs gate g against the canary backends.
func Run(ctx context.Context, g release.Gate, canary []netip.AddrPort, opts Options) Result {
	if opts.Dial == nil {
		var d net.Dialer
		opts.Dial = d.DialContext
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = time.Second
	}
	timeout := g.Timeout
	if timeout <= 0 {
		timeout = release.DefaultGateTimeout
	}
	start := time.Now()
	var r Result
	for attempt := 0; attempt <= g.Retries; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				r.Detail += " (cancelled)"
				r.Duration = time.Since(start)
				return r
			case <-time.After(opts.RetryDelay):
			}
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		r = once(actx, g, canary, opts)
		cancel()
		r.Attempts = attempt + 1
		if r.Pass || ctx.Err() != nil {
			break
		}
	}
	r.Duration = time.Since(start)
	return r
}

// RunAll runs gates in order and stops at the first that fails; ok says
// all passed.
func RunAll(ctx context.Context, gates []release.Gate, canary []netip.AddrPort, opts Options) ([]Result, bool) {
	var out []Result
	for _, g := range gates {
		r := Run(ctx, g, canary, opts)
		out = append(out, r)
		if !r.Pass {
			return out, false
		}
	}
	return out, true
}

func once(ctx context.Context, g release.Gate, canary []netip.AddrPort, opts Options) Result {
	switch {
	case g.TCP != nil:
		return eachBackend(canary, "accept connections", func(b netip.AddrPort) error {
			c, err := opts.Dial(ctx, "tcp", b.String())
			if err != nil {
				return err
			}
			return c.Close()
		})
	case g.HTTP != nil:
		client := &http.Client{
			Transport: &http.Transport{DialContext: opts.Dial, DisableKeepAlives: true},
			// A redirect is an answer to judge, not to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		return eachBackend(canary, "answer "+g.HTTP.Path+" as expected", func(b netip.AddrPort) error {
			return checkHTTP(ctx, client, b, g.HTTP)
		})
	case len(g.Exec) > 0:
		return runExec(ctx, g.Exec)
	}
	return Result{Detail: "the gate names no check (tcp, http or exec)"}
}

func eachBackend(canary []netip.AddrPort, what string, check func(netip.AddrPort) error) Result {
	if len(canary) == 0 {
		return Result{Detail: "the canary pool has no backends"}
	}
	var bad []string
	for _, b := range canary {
		if err := check(b); err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", b, err))
		}
	}
	if len(bad) > 0 {
		return Result{Detail: strings.Join(bad, "; ")}
	}
	return Result{Pass: true, Detail: fmt.Sprintf("all %d canary backends %s", len(canary), what)}
}

// maxBody bounds what is read of an HTTP answer.
const maxBody = 1 << 20

func checkHTTP(ctx context.Context, client *http.Client, b netip.AddrPort, h *release.HTTPGate) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.String()+h.Path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read the answer: %w", err)
	}
	want := h.ExpectStatus
	if want == 0 {
		want = http.StatusOK
	}
	if resp.StatusCode != want {
		return fmt.Errorf("status %d, want %d (body: %s)", resp.StatusCode, want, excerpt(body))
	}
	if len(h.ExpectJSON) == 0 {
		return nil
	}
	var doc any
	if err := json.Unmarshal(body, &doc); err != nil {
		return fmt.Errorf("the body is not JSON (%s): %v", excerpt(body), err)
	}
	var bad []string
	for _, path := range sortedKeys(h.ExpectJSON) {
		got, err := Lookup(doc, path)
		switch {
		case err != nil:
			bad = append(bad, err.Error())
		case got != h.ExpectJSON[path]:
			bad = append(bad, fmt.Sprintf("%s is %q, want %q", path, got, h.ExpectJSON[path]))
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, ", "))
	}
	return nil
}

func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strconv.Quote(s)
}

// Lookup finds path (".a.b", ".a[0].b", ".") in a decoded JSON document
// and returns the value as text: strings as they are, numbers as Go
// prints them (3, 3.5), true/false, null; objects and arrays as JSON.
func Lookup(doc any, path string) (string, error) {
	if !strings.HasPrefix(path, ".") {
		return "", fmt.Errorf("%s: a path starts with a dot, as in .db.status", path)
	}
	cur := doc
	rest := path[1:]
	for rest != "" {
		var key string
		var index = -1
		switch {
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return "", fmt.Errorf("%s: unclosed [", path)
			}
			n, err := strconv.Atoi(rest[1:end])
			if err != nil || n < 0 {
				return "", fmt.Errorf("%s: %q is not an index", path, rest[1:end])
			}
			index, rest = n, rest[end+1:]
		default:
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			key, rest = rest[:end], rest[end:]
			if key == "" {
				return "", fmt.Errorf("%s: an empty field name", path)
			}
		}
		rest = strings.TrimPrefix(rest, ".")
		switch v := cur.(type) {
		case map[string]any:
			if index >= 0 {
				return "", fmt.Errorf("%s: an object, not an array", path)
			}
			next, ok := v[key]
			if !ok {
				return "", fmt.Errorf("%s is missing", path)
			}
			cur = next
		case []any:
			if index < 0 {
				return "", fmt.Errorf("%s: an array, not an object", path)
			}
			if index >= len(v) {
				return "", fmt.Errorf("%s is missing (the array has %d elements)", path, len(v))
			}
			cur = v[index]
		default:
			return "", fmt.Errorf("%s is missing (%v has no fields)", path, text(cur))
		}
	}
	return text(cur), nil
}

func text(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func sortedKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// runExec runs argv; exit status 0 passes. The command is killed when the
// attempt's context ends; WaitDelay keeps a child that holds the output
// pipe from hanging the gate.
func runExec(ctx context.Context, argv []string) Result {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	// One writer for both: exec then uses one pipe, in order, no race.
	lw := &limited{w: &out}
	cmd.Stdout, cmd.Stderr = lw, lw
	err := cmd.Run()
	r := Result{Output: out.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
		r.Pass, r.Detail = true, "exit status 0"
	case ctx.Err() != nil:
		r.Detail = fmt.Sprintf("did not finish in time: %v", context.Cause(ctx))
	case errors.As(err, &ee):
		r.Detail = ee.Error()
	default:
		r.Detail = fmt.Sprintf("could not run %q: %v", argv[0], err)
	}
	return r
}

// limited keeps the first MaxOutput bytes written to it.
type limited struct {
	w    *bytes.Buffer
	full bool
}

func (l *limited) Write(p []byte) (int, error) {
	room := MaxOutput - l.w.Len()
	if l.full || room < 0 {
		return len(p), nil
	}
	if len(p) > room {
		l.w.Write(p[:room])
		l.w.WriteString("\n[output truncated]")
		l.full = true
		return len(p), nil
	}
	l.w.Write(p)
	return len(p), nil
}
