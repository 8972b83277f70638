package apiserver

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTokenMatch: a secret matches only its own token, whatever its
// length (the comparison is of hashes, not of the secrets).
func TestTokenMatch(t *testing.T) {
	hashed := hashTokens([]Token{{Name: "a", Secret: "aaaa-secret-0123456789", Tenant: "t"}, {Name: "b", Secret: "bbbb-secret-0123456789", Tenant: "*"}})
	for secret, want := range map[string]string{
		"aaaa-secret-0123456789":  "a",
		"bbbb-secret-0123456789":  "b",
		"bbbb-secret-012345678":   "",
		"bbbb-secret-01234567890": "",
		"":                        "",
	} {
		got, ok := match(hashed, secret)
		if (want == "") == ok || got.name != want {
			t.Errorf("match(%q) = %q, %v; want %q", secret, got.name, ok, want)
		}
	}
}

// TestRateLimits: a token over its request rate or its requests in
// flight is answered 429 with Retry-After, and another token is not
// held up; a tenant's body is bounded lower than an admin's.
func TestRateLimits(t *testing.T) {
	s := New(startNode(t), slog.New(slog.DiscardHandler))
	remote := s.Remote([]Token{{Name: "admin", Secret: "admin-secret-0123456789", Tenant: "*"}, {Name: "a", Secret: "team-a-secret-0123456789", Tenant: "team-a"}})
	get := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/v1/services", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		remote.ServeHTTP(rec, req)
		return rec
	}
	limited := 0
	for range tenantBurst + 5 {
		if rec := get("team-a-secret-0123456789"); rec.Code == http.StatusTooManyRequests {
			limited++
			if rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "requests per second") {
				t.Errorf("429 without Retry-After or reason: %v %s", rec.Header(), rec.Body)
			}
		}
	}
	if limited < 4 {
		t.Errorf("%d of %d requests past the tenant's burst were limited", limited, tenantBurst+5)
	}
	if rec := get("admin-secret-0123456789"); rec.Code != http.StatusOK {
		t.Errorf("the admin is held up by the tenant's limit: %d %s", rec.Code, rec.Body)
	}
}

// TestTenantBody: a tenant's request body is bounded lower than an
// admin's.
func TestTenantBody(t *testing.T) {
	s := New(startNode(t), slog.New(slog.DiscardHandler))
	remote := s.Remote([]Token{{Name: "admin", Secret: "admin-secret-0123456789", Tenant: "*"}, {Name: "a", Secret: "team-a-secret-0123456789", Tenant: "team-a"}})
	big := "# " + strings.Repeat("x", tenantBody) + "\n" + manifestA
	do(t, remote, call{"POST", "/v1/apply", "team-a-secret-0123456789", big, 413, "exceeds 1048576 bytes"})
	do(t, remote, call{"POST", "/v1/apply", "admin-secret-0123456789", big, 200, `"index"`})
}

// TestConcurrencyLimit: a token's requests in flight are bounded.
func TestConcurrencyLimit(t *testing.T) {
	var l callerLimits
	tenant := identity{name: "a", tenant: "team-a"}
	var done []func()
	for range tenantConcurrent {
		d, err := l.admit(tenant)
		if err != nil {
			t.Fatal(err)
		}
		done = append(done, d)
	}
	if _, err := l.admit(tenant); err == nil || !strings.Contains(err.Error(), "in flight") {
		t.Fatalf("a request past the slots: %v", err)
	}
	if _, err := l.admit(identity{name: "admin", tenant: "*"}); err != nil {
		t.Errorf("another token is held up: %v", err)
	}
	done[0]()
	if _, err := l.admit(tenant); err != nil {
		t.Errorf("a slot given back is not taken again: %v", err)
	}
}

// TestFailedLogins: a peer whose logins keep failing is answered 429,
// even with a good token, until it waits; another peer is not.
func TestFailedLogins(t *testing.T) {
	s := New(startNode(t), slog.New(slog.DiscardHandler))
	remote := s.Remote([]Token{{Name: "admin", Secret: "admin-secret-0123456789", Tenant: "*"}})
	try := func(peer, token string) int {
		req := httptest.NewRequest("GET", "/v1/members", nil)
		req.RemoteAddr = peer + ":40000"
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		remote.ServeHTTP(rec, req)
		return rec.Code
	}
	for range failedLoginBurst {
		if code := try("192.0.2.1", "guess-0123456789"); code != http.StatusUnauthorized {
			t.Fatalf("a wrong token: %d, want 401", code)
		}
	}
	if code := try("192.0.2.1", "admin-secret-0123456789"); code != http.StatusTooManyRequests {
		t.Errorf("the good token from a peer past its failures: %d, want 429", code)
	}
	if code := try("192.0.2.2", "admin-secret-0123456789"); code != http.StatusOK {
		t.Errorf("another peer: %d, want 200", code)
	}
	time.Sleep(1100 * time.Millisecond / failedLoginRate)
	if code := try("192.0.2.1", "admin-secret-0123456789"); code != http.StatusOK {
		t.Errorf("the peer after waiting: %d, want 200", code)
	}
}

// TestLimitListener: a peer holds at most perPeer connections, all peers
// at most total; one over is closed at once, and a closed one frees its
// place.
func TestLimitListener(t *testing.T) {
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := LimitListener(tcp, 10, 2)
	defer ln.Close()
	var mu sync.Mutex
	var accepted []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepted = append(accepted, c)
			mu.Unlock()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", tcp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	closedAtOnce := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	a, b, c := dial(), dial(), dial()
	defer a.Close()
	defer b.Close()
	if !closedAtOnce(c) {
		t.Error("a third connection of one peer was kept")
	}
	mu.Lock()
	accepted[0].Close()
	mu.Unlock()
	d := dial()
	defer d.Close()
	d.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := d.Read(make([]byte, 1)); err == io.EOF {
		t.Error("a connection after one was closed was refused")
	}
}
