package root_test

import (
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/graylane/graylane/ctl/root"
	"github.com/graylane/graylane/internal/ctltest"
)

// TestUnreachable: when no agent answers, the message names the server
// and what to check, and the exit code is 1.
func TestUnreachable(t *testing.T) {
	dir := t.TempDir()
	// A socket file nobody listens on: what a crashed agent leaves.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for _, tc := range []struct{ name, server string }{
		{"unreachable-no-socket", "unix://" + filepath.Join(dir, "api.sock")},
		{"unreachable-refused", "unix://" + stale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := ctltest.Run([]string{"--server", tc.server, "members"}, "", nil)
			if code != 1 {
				t.Errorf("exit %d, want 1; output:\n%s", code, out)
			}
			ctltest.Golden(t, ctltest.Testdata, tc.name, strings.ReplaceAll(out, dir, "/run/graylane"))
		})
	}
}

// TestHTTPS: an https server needs --ca to be trusted and a token, which
// comes from --token or GRAYLANE_TOKEN and travels as a bearer token.
func TestHTTPS(t *testing.T) {
	const secret = "s3cret-token"
	var mu sync.Mutex
	var auth []string
	agent := new(ctltest.Agent).Handler()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+secret {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"unknown token"}`))
			return
		}
		agent.ServeHTTP(w, r)
	}))
	// The handshakes refused on purpose would be logged as noise.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no CA", []string{"members"}, map[string]string{root.TokenEnv: secret}, 1, "give the cluster's CA certificate with --ca FILE"},
		{"CA not PEM", []string{"--ca", notPEM, "members"}, map[string]string{root.TokenEnv: secret}, 2, "no PEM certificate"},
		{"no token", []string{"--ca", ca, "members"}, nil, 1, "unknown token (give a valid API token with --token or the GRAYLANE_TOKEN environment variable)"},
		{"wrong --token", []string{"--ca", ca, "--token", "nope", "members"}, map[string]string{root.TokenEnv: secret}, 1, "--token"},
		{"token from the environment", []string{"--ca", ca, "members", "-o", "json"}, map[string]string{root.TokenEnv: secret}, 0, `"node": "gw"`},
		{"--token", []string{"--ca", ca, "--token", secret, "set-weight", "auth", "5"}, nil, 0, "committed at index 42"},
	} {
		out, code := ctltest.Run(append([]string{"--server", srv.URL}, tc.args...), "", tc.env)
		if code != tc.code || !strings.Contains(out, tc.want) {
			t.Errorf("%s: exit %d, output %q; want exit %d and %q", tc.name, code, out, tc.code, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// No request without --ca nor with the bad CA file; the others carry
	// exactly the token they were given.
	want := []string{"", "Bearer nope", "Bearer " + secret, "Bearer " + secret}
	if strings.Join(auth, "|") != strings.Join(want, "|") {
		t.Errorf("Authorization headers %q, want %q", auth, want)
	}
}
