package l7proxy

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// TestHeaderRule: 200 connections with X-Canary: v2 all reach the canary,
// 200 without it none; each decided once, by rule 0 or by weight, and
// each first response measured with its status.
func TestHeaderRule(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}})
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	const n = 200
	var mu sync.Mutex
	got := map[string]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < 2*n; i += 8 {
				h := map[string]string{}
				want := "stable"
				if i%2 == 0 {
					h["X-Canary"], want = "v2", "canary"
				}
				name := get(t, client, "http://"+e.addr+"/", h)
				mu.Lock()
				got[want+"->"+name]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if got["canary->canary"] != n || got["stable->stable"] != n || len(got) != 2 {
		t.Errorf("answered by: %v, want canary->canary:%d stable->stable:%d", got, n, n)
	}
	c, s := e.obs.Pool(service.Canary), e.obs.Pool(service.Stable)
	if c.Decided != n || c.Rules[0] != n || c.ByWeight != 0 {
		t.Errorf("canary counts %+v, want %d decided by rule 0", c, n)
	}
	if s.Decided != n || s.ByWeight != n || len(s.Rules) != 0 {
		t.Errorf("stable counts %+v, want %d decided by weight", s, n)
	}
	for _, pc := range []PoolCounts{c, s} {
		if pc.Connects != n || pc.Responses != n || pc.Statuses[200] != n || pc.Errors5xx != 0 {
			t.Errorf("connects %d, responses %d, statuses %v, 5xx %d; want %d connects and 200s",
				pc.Connects, pc.Responses, pc.Statuses, pc.Errors5xx, n)
		}
	}
}

// TestKeepAliveFollowsFirst: on one keep-alive connection every request
// goes where the first went, whatever its own headers say.
func TestKeepAliveFollowsFirst(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}})
	for _, first := range []string{"canary", "stable"} {
		tr := &http.Transport{MaxConnsPerHost: 1}
		client := &http.Client{Transport: tr}
		h := map[string]string{}
		if first == "canary" {
			h["X-Canary"] = "v2"
		}
		if got := get(t, client, "http://"+e.addr+"/", h); got != first {
			t.Fatalf("first request answered by %s, want %s", got, first)
		}
		for i := range 20 {
			// The opposite of the first request's header.
			h := map[string]string{"X-Canary": "v2"}
			if first == "canary" {
				h = nil
			}
			if got := get(t, client, "http://"+e.addr+"/", h); got != first {
				t.Fatalf("request %d answered by %s, want %s like the first", i+2, got, first)
			}
		}
		tr.CloseIdleConnections()
	}
	if c, s := e.obs.Pool(service.Canary), e.obs.Pool(service.Stable); c.Decided != 1 || s.Decided != 1 {
		t.Errorf("decisions: canary %d, stable %d; want one connection each", c.Decided, s.Decided)
	}
}

// TestFirstResponseError: a 5xx first response is counted as an error of
// its pool.
func TestFirstResponseError(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{})
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	for range 10 {
		if got := get(t, &http.Client{Transport: tr}, "http://"+e.addr+"/fail", nil); got != "stable" {
			t.Fatalf("answered by %s", got)
		}
	}
	if s := e.obs.Pool(service.Stable); s.Responses != 10 || s.Errors5xx != 10 || s.Statuses[503] != 10 {
		t.Errorf("stable: %d responses, %d 5xx, statuses %v; want 10 503s", s.Responses, s.Errors5xx, s.Statuses)
	}
}

// TestNoBackend and dial failures answer HTTP/1.x clients with 503.
func TestNoBackend(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}})
	delete(e.dec.backends, service.Canary)
	c := dialRaw(t, e.addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\nX-Canary: v2\r\n\r\n"))
	if ans, err := readAnswer(c); !strings.HasPrefix(ans, "HTTP/1.1 503 ") || err != nil {
		t.Errorf("answer %q, %v; want 503", ans, err)
	}
	if n := e.obs.CutCount(ReasonNoBackend); n != 1 {
		t.Errorf("no_backend cuts: %d", n)
	}
}

func TestDialFailed(t *testing.T) {
	checkLeaks(t)
	// A port nobody listens on: the listener is closed at once.
	ln := listenTCP(t)
	dead := addrPort(ln.Addr())
	ln.Close()
	e := newEnv(t, envConfig{stable: dead})
	c := dialRaw(t, e.addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
	if ans, err := readAnswer(c); !strings.HasPrefix(ans, "HTTP/1.1 503 ") || err != nil {
		t.Errorf("answer %q, %v; want 503", ans, err)
	}
	if s := e.obs.Pool(service.Stable); s.Decided != 1 || s.Cut[ReasonDialFailed] != 1 || s.Connects != 0 {
		t.Errorf("stable counts %+v, want 1 decided and dial_failed", s)
	}
}
