package webhook

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type receiver struct {
	mu     sync.Mutex
	got    []Event
	failN  atomic.Int32 // fail this many requests first
	delay  time.Duration
	posted atomic.Int32
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.posted.Add(1)
	time.Sleep(r.delay)
	if r.failN.Add(-1) >= 0 {
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	var e Event
	if err := json.NewDecoder(req.Body).Decode(&e); err != nil || req.Header.Get("Content-Type") != "application/json" {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.got = append(r.got, e)
	r.mu.Unlock()
}

func (r *receiver) events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.got...)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5s: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestDelivery: each target gets the kinds it asked for; a target that
// fails twice gets the event on the third attempt; a slow target does not
// hold up a fast one, nor the sender.
func TestDelivery(t *testing.T) {
	flaky, slow, all := &receiver{}, &receiver{delay: 300 * time.Millisecond}, &receiver{}
	flaky.failN.Store(2)
	urls := map[*receiver]string{}
	for _, r := range []*receiver{flaky, slow, all} {
		srv := httptest.NewServer(r)
		t.Cleanup(srv.Close)
		urls[r] = srv.URL
	}
	s := New([]Target{{URL: urls[flaky], Kinds: []string{"rollback"}}, {URL: urls[slow]}, {URL: urls[all]}},
		Options{Backoff: 10 * time.Millisecond, Attempts: 3})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	start := time.Now()
	for _, kind := range []string{"step", "rollback", "promote"} {
		s.Send(Event{Release: "r", Kind: kind, Weight: "5%"})
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("Send blocked for %v", d)
	}
	waitFor(t, "the fast target has all three", func() bool { return len(all.events()) == 3 })
	if len(slow.events()) == 3 {
		t.Error("the slow target was not slower: the test proves nothing")
	}
	waitFor(t, "the flaky target has the rollback", func() bool { return len(flaky.events()) == 1 })
	if got := flaky.events()[0].Kind; got != "rollback" || flaky.posted.Load() != 3 {
		t.Errorf("flaky target: %q after %d posts, want the rollback after 3", got, flaky.posted.Load())
	}
	waitFor(t, "the slow target has all three", func() bool { return len(slow.events()) == 3 })
	cancel()
	<-done
}

// TestGivesUp: a target that always fails gets Attempts posts, then the
// event is dropped; a full queue drops instead of blocking.
func TestGivesUp(t *testing.T) {
	down := &receiver{}
	down.failN.Store(1 << 30)
	srv := httptest.NewServer(down)
	t.Cleanup(srv.Close)
	s := New([]Target{{URL: srv.URL}}, Options{Backoff: time.Millisecond, Attempts: 4, Queue: 2})
	// Not running yet: the queue fills and the rest is dropped, at once.
	start := time.Now()
	for range 10 {
		s.Send(Event{Kind: "step"})
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("Send blocked on a full queue for %v", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	waitFor(t, "two events tried 4 times each", func() bool { return down.posted.Load() == 8 })
	time.Sleep(50 * time.Millisecond)
	if n := down.posted.Load(); n != 8 {
		t.Errorf("%d posts, want 8", n)
	}
	cancel()
	<-done
}
