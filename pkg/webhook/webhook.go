// Package webhook tells other systems about release decisions: a JSON POST
// per event to each configured URL that wants its kind, retried with
// backoff. Sending never blocks the caller: events wait in a bounded
// queue, and when it is full the newest is dropped and logged.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Event is what a webhook receives.
type Event struct {
	At      time.Time          `json:"at"`
	Node    string             `json:"node"` // the leader that decided
	Release string             `json:"release"`
	Service string             `json:"service"`
	Kind    string             `json:"kind"`
	Step    int                `json:"step"` // from 1
	Weight  string             `json:"weight"`
	Message string             `json:"message"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
}

// Target is a URL and the event kinds it wants (none: all).
type Target struct {
	URL   string
	Kinds []string
}

// Options tune a Sender.
type Options struct {
	// Attempts per event and target (default 5); the waits between them
	// double from Backoff (default 1s) up to MaxBackoff (default 30s).
	Attempts            int
	Backoff, MaxBackoff time.Duration
	// Timeout bounds one POST (default 5s).
	Timeout time.Duration
	// Queue is how many events may wait (default 1000).
	Queue  int
	Client *http.Client
	Log    *slog.Logger
}

// Sender delivers events to targets.
type Sender struct {
	targets []Target
	opts    Options
	queue   chan Event
	wg      sync.WaitGroup
}

// New returns a sender; Run delivers.
func New(targets []Target, opts Options) *Sender {
	if opts.Attempts <= 0 {
		opts.Attempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if opts.Queue <= 0 {
		opts.Queue = 1000
	}
	if opts.Client == nil {
		opts.Client = &http.Client{}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Sender{targets: targets, opts: opts, queue: make(chan Event, opts.Queue)}
}

// Send queues e for every target that wants it; it never blocks.
func (s *Sender) Send(e Event) {
	if len(s.targets) == 0 {
		return
	}
	select {
	case s.queue <- e:
	default:
		s.opts.Log.Warn("webhook queue full: an event is dropped", "release", e.Release, "kind", e.Kind, "queue", cap(s.queue))
	}
}

// Run delivers queued events until ctx ends: each target has its own
// worker, so a slow one does not hold up the others.
func (s *Sender) Run(ctx context.Context) {
	perTarget := make([]chan Event, len(s.targets))
	for i, t := range s.targets {
		perTarget[i] = make(chan Event, s.opts.Queue)
		s.wg.Go(func() { s.deliver(ctx, t, perTarget[i]) })
	}
	defer s.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-s.queue:
			for i, t := range s.targets {
				if len(t.Kinds) > 0 && !slices.Contains(t.Kinds, e.Kind) {
					continue
				}
				select {
				case perTarget[i] <- e:
				default:
					s.opts.Log.Warn("webhook target is behind: an event is dropped", "url", t.URL, "release", e.Release, "kind", e.Kind)
				}
			}
		}
	}
}

func (s *Sender) deliver(ctx context.Context, t Target, events <-chan Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-events:
			if err := s.post(ctx, t.URL, e); err != nil {
				s.opts.Log.Warn("webhook not delivered", "url", t.URL, "release", e.Release, "kind", e.Kind, "err", err)
			}
		}
	}
}

// post sends e to url, retrying with backoff; a 2xx answer is delivery.
func (s *Sender) post(ctx context.Context, url string, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	wait := s.opts.Backoff
	var last error
	for attempt := 1; attempt <= s.opts.Attempts; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			wait = min(2*wait, s.opts.MaxBackoff)
		}
		last = s.once(ctx, url, body)
		if last == nil {
			return nil
		}
	}
	return fmt.Errorf("%d attempts: %w", s.opts.Attempts, last)
}

func (s *Sender) once(ctx context.Context, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("answered %s", resp.Status)
	}
	return nil
}
