package apiserver

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTenants: an admin grants a tenant its addresses and quotas; the
// tenant's writes stay inside them, it sees its own Tenant only, and it
// cannot take another tenant's traffic.
func TestTenants(t *testing.T) {
	s := New(startNode(t), slog.New(slog.DiscardHandler))
	s.SetCapturer(nopCapturer{})
	remote := s.Remote([]Token{{Name: "admin", Secret: "admin-secret-0123456789", Tenant: "*"}, {Name: "a", Secret: "team-a-secret-0123456789", Tenant: "team-a"}})
	const admin, a = "admin-secret-0123456789", "team-a-secret-0123456789"
	tenantA5 := strings.Replace(tenantA, "maxMirrorPercent: 100%", "maxMirrorPercent: 5%", 1)
	tenantB := strings.ReplaceAll(tenantA, "team-a", "team-b")
	noTenant := strings.Replace(manifestA, "metadata: {name: web, tenant: team-a}", "metadata: {name: web}", 1)
	outside := strings.Replace(noTenant, "10.0.0.10", "10.9.0.10", 1)
	// b's backend 10.1.0.21:5432 as a's VIP:port.
	hijack := strings.NewReplacer("name: web", "name: thief", "vip: 10.0.0.10", "vip: 10.1.0.21", "port: 80", "port: 5432",
		"10.1.0.11:8080", "10.1.0.12:8080", "10.2.0.11:8080", "10.2.0.12:8080").Replace(noTenant)
	withRelease := manifestA + `---
apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: web-v2}
spec:
  service: web
  steps: [{setWeight: 10}]
  analysis: {breaker: {open: {p99Above: 800ms, errorRateAtLeast: 5%}}}
`
	for _, c := range []call{
		{"POST", "/v1/apply", admin, tenantA5 + "---\n" + tenantB, 200, `"index"`},
		{"POST", "/v1/apply", admin, manifestB, 200, `"index"`},
		{"POST", "/v1/apply", admin, tenantA + "---\n" + manifestB, 400, "on their own"},
		{"GET", "/v1/tenants", a, "", 200, `"name":"team-a"`},
		{"GET", "/v1/tenants/team-b", a, "", 404, `tenant \"team-b\" does not exist`},
		{"GET", "/v1/tenants/team-b", admin, "", 200, `"services":1`},
		{"POST", "/v1/apply", a, outside, 422, `outside tenant \"team-a\"'s VIP prefixes`},
		{"POST", "/v1/apply", a, hijack, 409, "a backend endpoint of another tenant's service"},
		{"POST", "/v1/apply", a, noTenant, 200, `"index"`},
		{"GET", "/v1/services/web", a, "", 200, `"tenant":"team-a"`},
		{"GET", "/v1/services/web/capture?percent=100%25&duration=1s", a, "", 422, `above tenant \"team-a\"'s maxMirrorPercent 5%`},
		{"GET", "/v1/services/web/capture?percent=1%25&duration=1s", a, "", 200, ""},
		{"POST", "/v1/apply", a, withRelease, 200, `"index"`},
		{"DELETE", "/v1/tenants/team-a", a, "", 403, "only an admin token"},
		{"DELETE", "/v1/tenants/team-a", admin, "", 409, "still owns services web"},
		{"DELETE", "/v1/services/web", a, "", 409, `has releases web-v2`},
		{"DELETE", "/v1/services/web?cascade=true", a, "", 200, `"index"`},
		{"GET", "/v1/releases/web-v2", admin, "", 404, "does not exist"},
		{"DELETE", "/v1/tenants/team-a", admin, "", 200, `"index"`},
		{"DELETE", "/v1/releases/nope", admin, "", 404, "does not exist"},
	} {
		do(t, remote, c)
	}
	// Refusals over another tenant's service do not name it: the hijack,
	// and a VIP:port another tenant's service holds.
	sameVIP := strings.NewReplacer("name: web", "name: twin", "vip: 10.0.0.10", "vip: 10.0.0.20", "port: 80", "port: 5432",
		"10.1.0.11:8080", "10.1.0.13:8080", "10.2.0.11:8080", "10.2.0.13:8080").Replace(noTenant)
	for _, body := range []string{hijack, sameVIP} {
		rec := doRec(remote, "POST", "/v1/apply", a, body)
		if !strings.Contains(rec, "another tenant's service") || strings.Contains(rec, "db") || strings.Contains(rec, "team-b") {
			t.Errorf("a refusal over another tenant's service: %s", rec)
		}
	}
}

// doRec makes a call and returns the answer's body.
func doRec(h http.Handler, method, path, token, body string) string {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Body.String()
}

// TestAudit: every write through the API is recorded with its token,
// tenant and peer; a tenant's token reads its own tenant's record only.
func TestAudit(t *testing.T) {
	s := New(startNode(t), slog.New(slog.DiscardHandler))
	remote := s.Remote([]Token{{Name: "ops", Secret: "admin-secret-0123456789", Tenant: "*"}, {Name: "a", Secret: "team-a-secret-0123456789", Tenant: "team-a"}})
	const admin, a = "admin-secret-0123456789", "team-a-secret-0123456789"
	for _, c := range []call{
		{"POST", "/v1/apply", admin, tenantA, 200, `"index"`},
		{"POST", "/v1/apply", admin, manifestB, 200, `"index"`},
		{"POST", "/v1/apply", a, manifestA, 200, `"index"`},
		{"PUT", "/v1/services/web/weight", a, `{"weight":"25%"}`, 200, `"index"`},
		{"GET", "/v1/audit?limit=0", admin, "", 400, "limit="},
	} {
		do(t, remote, c)
	}
	all := doRec(remote, "GET", "/v1/audit", admin, "")
	for _, want := range []string{`"token":"a"`, `"command":"set-weight web 25%"`, `"tenant":"team-a"`, `"token":"ops"`, `"command":"apply service db"`, `"peer":"192.0.2.1:1234"`} {
		if !strings.Contains(all, want) {
			t.Errorf("the admin's audit lacks %s:\n%s", want, all)
		}
	}
	if i, j := strings.Index(all, "set-weight web"), strings.Index(all, "apply tenant team-a"); i < 0 || j < 0 || i > j {
		t.Errorf("the audit is not newest first:\n%s", all)
	}
	mine := doRec(remote, "GET", "/v1/audit", a, "")
	if !strings.Contains(mine, "set-weight web 25%") || strings.Contains(mine, "db") || strings.Contains(mine, "team-b") {
		t.Errorf("tenant a's audit:\n%s", mine)
	}
}

// nopCapturer starts every capture and writes nothing.
type nopCapturer struct{}

func (nopCapturer) Capture(_ context.Context, _ CaptureSpec, start func() io.Writer) error {
	start()
	return nil
}

// blockingCapturer starts every capture and holds it until release.
type blockingCapturer struct{ started, release chan struct{} }

func (b blockingCapturer) Capture(ctx context.Context, _ CaptureSpec, start func() io.Writer) error {
	start()
	b.started <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// TestTenantCaptures: a tenant runs at most maxCaptures captures at once
// on a node; once one ends, another may start.
func TestTenantCaptures(t *testing.T) {
	s := New(startNode(t), slog.New(slog.DiscardHandler))
	bc := blockingCapturer{started: make(chan struct{}, 1), release: make(chan struct{})}
	s.SetCapturer(bc)
	remote := s.Remote([]Token{{Name: "admin", Secret: "admin-secret-0123456789", Tenant: "*"}, {Name: "a", Secret: "team-a-secret-0123456789", Tenant: "team-a"}})
	const admin, a = "admin-secret-0123456789", "team-a-secret-0123456789"
	do(t, remote, call{"POST", "/v1/apply", admin, tenantA + "  maxCaptures: 1\n", 200, `"index"`})
	do(t, remote, call{"POST", "/v1/apply", a, manifestA, 200, `"index"`})
	first := make(chan string, 1)
	go func() { first <- doRec(remote, "GET", "/v1/services/web/capture?percent=1%25&duration=1s", a, "") }()
	<-bc.started
	do(t, remote, call{"GET", "/v1/services/web/capture?percent=1%25&duration=1s", a, "", 422, "already runs 1 captures on this node, its maxCaptures"})
	close(bc.release)
	<-first
	go func() { <-bc.started }()
	do(t, remote, call{"GET", "/v1/services/web/capture?percent=1%25&duration=1s", a, "", 200, ""})
}
