package shadow

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Options are a shadow run's settings.
type Options struct {
	// Targets receive the replayed requests: an exchange goes to the
	// target chosen by a hash of its original client address and port,
	// so one client's requests all go to the same target. Required.
	Targets []netip.AddrPort
	// Dial makes each replay's connection ("tcp" or "udp"); nil: a
	// net.Dialer. Give one that dials from another network namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Speed scales the capture's pacing: 2 replays twice as fast. Zero
	// means 1, the original pacing; negative, NaN or infinite is an error.
	Speed float64
	// AsFastAsPossible ignores the pacing: every request is sent at once
	// (at most MaxInFlight at a time).
	AsFastAsPossible bool
	// Methods, if given, are the HTTP methods replayed (case-insensitive);
	// others are skipped as "method". By default the safe methods are:
	// GET, HEAD, OPTIONS, TRACE; POST, PUT, PATCH, DELETE and the rest
	// change state and are replayed only when named here.
	Methods []string
	// Protocol, if given, is the only protocol replayed; exchanges of the
	// other are skipped as "protocol" (a service is TCP or UDP).
	Protocol Protocol
	// IgnoreHeaders are response headers not compared, beside
	// VolatileHeaders.
	IgnoreHeaders []string
	// Timeout bounds each replay from dial to the response's last byte
	// (0: 10s); a UDP request unanswered this long is an error.
	Timeout time.Duration
	// MaxInFlight bounds the replays under way at once (0: 256).
	MaxInFlight int
	// Examples is how many differences the report shows (0: 10; negative:
	// none).
	Examples int
}

// Skip reasons, the keys of Report.Skipped.
const (
	SkipMethod     = "method"     // not a method replayed (see Options.Methods)
	SkipUnanswered = "unanswered" // no recorded response to compare with
	SkipUpgrade    = "upgrade"    // CONNECT or 101 Switching Protocols: not HTTP/1.x after it
	SkipProtocol   = "protocol"   // not Options.Protocol
)

// DefaultMethods are the methods replayed when Options.Methods is empty.
var DefaultMethods = []string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace}

// settings are Options checked and with their defaults.
type settings struct {
	Options
	methods map[string]bool
	ignore  map[string]bool
	dial    func(ctx context.Context, network, address string) (net.Conn, error)
}

func (o Options) settings() (settings, error) {
	s := settings{Options: o, methods: map[string]bool{}, ignore: map[string]bool{}}
	switch {
	case len(o.Targets) == 0:
		return s, errors.New("shadow: no target to replay to")
	case math.IsNaN(o.Speed) || math.IsInf(o.Speed, 0) || o.Speed < 0:
		return s, fmt.Errorf("shadow: speed %v: give a positive factor, such as 1 (the capture's pacing)", o.Speed)
	}
	for _, t := range o.Targets {
		if !t.IsValid() || t.Port() == 0 {
			return s, fmt.Errorf("shadow: target %v: give an address and a port", t)
		}
	}
	if s.Speed == 0 {
		s.Speed = 1
	}
	if s.Timeout <= 0 {
		s.Timeout = 10 * time.Second
	}
	if s.MaxInFlight <= 0 {
		s.MaxInFlight = 256
	}
	if s.Examples == 0 {
		s.Examples = 10
	}
	methods := o.Methods
	if len(methods) == 0 {
		methods = DefaultMethods
	}
	for _, m := range methods {
		s.methods[strings.ToUpper(m)] = true
	}
	for _, h := range VolatileHeaders {
		s.ignore[http.CanonicalHeaderKey(h)] = true
	}
	for _, h := range o.IgnoreHeaders {
		s.ignore[http.CanonicalHeaderKey(h)] = true
	}
	s.dial = o.Dial
	if s.dial == nil {
		d := &net.Dialer{}
		s.dial = d.DialContext
	}
	return s, nil
}

// skip returns why ex is not replayed, or "".
func (s *settings) skip(ex *Exchange) string {
	switch {
	case s.Protocol != "" && ex.Protocol != s.Protocol:
		return SkipProtocol
	case ex.Response == nil:
		return SkipUnanswered
	case ex.Protocol != HTTP:
		return ""
	case ex.Request.Method == http.MethodConnect || ex.Response.Status == http.StatusSwitchingProtocols:
		return SkipUpgrade
	case !s.methods[ex.Request.Method]:
		return SkipMethod
	}
	return ""
}

// target picks the target of an exchange by its original client.
func (s *settings) target(ex *Exchange) netip.AddrPort {
	h := fnv.New32a()
	b, _ := ex.Client.MarshalBinary()
	h.Write(b)
	// The high bits, by multiplication: FNV's low bit is only the parity
	// of the bytes' low bits.
	return s.Targets[(uint64(h.Sum32())*uint64(len(s.Targets)))>>32]
}

// outcome is one replay's result.
type outcome struct {
	skipped string
	replied bool
	latency time.Duration
	diff    *difference
	target  netip.AddrPort
}

// Run replays the exchanges' requests to opts.Targets, each over a fresh
// connection, paced as captured (scaled by Speed), and compares the
// answers with the recorded responses. It returns when every replay has
// ended; if ctx ends first, it returns the report of the replays done so
// far with ctx's error.
func Run(ctx context.Context, exchanges []Exchange, opts Options) (Report, error) {
	s, err := opts.settings()
	if err != nil {
		return Report{}, err
	}
	began := time.Now()
	outcomes := make([]outcome, len(exchanges))
	var wg sync.WaitGroup
	slots := make(chan struct{}, s.MaxInFlight)
	var first time.Time
	for i := range exchanges {
		ex := &exchanges[i]
		if outcomes[i].skipped = s.skip(ex); outcomes[i].skipped != "" {
			continue
		}
		if first.IsZero() {
			first = ex.At
		}
		if err := s.wait(ctx, began, ex.At.Sub(first)); err != nil {
			break
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			outcomes[i] = s.replay(ctx, ex)
		}()
	}
	wg.Wait()
	rep := newReport(exchanges, outcomes, s.Examples, time.Since(began))
	return rep, ctx.Err()
}

// wait sleeps until offset (scaled by the speed) after began.
func (s *settings) wait(ctx context.Context, began time.Time, offset time.Duration) error {
	if s.AsFastAsPossible {
		return ctx.Err()
	}
	due := began.Add(time.Duration(float64(offset) / s.Speed))
	d := time.Until(due)
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// replay sends ex's request to its target and compares the answer.
func (s *settings) replay(ctx context.Context, ex *Exchange) outcome {
	out := outcome{target: s.target(ex)}
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	var got *Response
	var err error
	if ex.Protocol == UDP {
		got, out.latency, err = s.exchangeUDP(ctx, out.target, ex.Request.Raw)
	} else {
		got, out.latency, err = s.exchangeHTTP(ctx, out.target, ex)
	}
	if err != nil {
		out.diff = &difference{kind: KindError, recorded: recordedText(ex), got: err.Error()}
		return out
	}
	out.replied = true
	out.diff = compareResponses(ex.Protocol, ex.Response, got, s.ignore)
	return out
}

func recordedText(ex *Exchange) string {
	if ex.Protocol == HTTP {
		return fmt.Sprintf("status %d", ex.Response.Status)
	}
	return fmt.Sprintf("%d bytes", len(ex.Response.Body))
}

// exchangeHTTP sends the request as captured and reads the final
// response. The latency is from the request's write to the response's
// first byte, as Read measures it, without the connection's setup.
func (s *settings) exchangeHTTP(ctx context.Context, to netip.AddrPort, ex *Exchange) (*Response, time.Duration, error) {
	c, err := s.dial(ctx, "tcp", to.String())
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sent := time.Now()
	if _, err := c.Write(ex.Request.Raw); err != nil {
		return nil, 0, fmt.Errorf("send: %w", err)
	}
	br := bufio.NewReader(c)
	if _, err := br.Peek(1); err != nil {
		return nil, 0, fmt.Errorf("no response: %w", deadlineCause(ctx, err))
	}
	latency := time.Since(sent)
	req := &http.Request{Method: ex.Request.Method}
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return nil, latency, fmt.Errorf("read the response: %w", deadlineCause(ctx, err))
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, latency, fmt.Errorf("read the response's body: %w", deadlineCause(ctx, err))
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, latency, nil
		}
	}
}

// exchangeUDP sends the datagram and waits for one answer.
func (s *settings) exchangeUDP(ctx context.Context, to netip.AddrPort, datagram []byte) (*Response, time.Duration, error) {
	c, err := s.dial(ctx, "udp", to.String())
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sent := time.Now()
	if _, err := c.Write(datagram); err != nil {
		return nil, 0, fmt.Errorf("send: %w", err)
	}
	buf := make([]byte, 65536)
	n, err := c.Read(buf)
	if err != nil {
		return nil, 0, fmt.Errorf("no answer: %w", deadlineCause(ctx, err))
	}
	return &Response{Body: buf[:n]}, time.Since(sent), nil
}

// deadlineCause says "timed out after …" for an error caused by ctx's
// deadline, which Run set from Options.Timeout.
func deadlineCause(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errors.New("timed out")
	}
	return err
}
