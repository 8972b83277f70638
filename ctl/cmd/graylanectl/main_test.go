package main

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

	"github.com/spf13/cobra"

	"github.com/graylane/graylane/ctl/root"
	"github.com/graylane/graylane/internal/ctltest"
)

// Tests of graylanectl as a user runs it, through internal/ctltest.

func serve(t *testing.T) (*ctltest.Agent, string) { return ctltest.Serve(t) }

func graylanectl(args []string, stdin string, env map[string]string) (string, int) {
	return ctltest.Run(args, stdin, env)
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	ctltest.Golden(t, ctltest.Testdata, name, got)
}

// TestOutput: every command's output in every format, and its exit code.
func TestOutput(t *testing.T) {
	manifest := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: graylane.io/v1\nkind: Service\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		code  int
	}{
		{"get-services", []string{"get", "services"}, "", 0},
		{"get-services-json", []string{"get", "services", "-o", "json"}, "", 0},
		{"get-services-yaml", []string{"get", "services", "-o", "yaml"}, "", 0},
		{"get-service", []string{"get", "service", "auth"}, "", 0},
		{"get-service-missing", []string{"get", "service", "nope"}, "", 1},
		{"set-weight", []string{"set-weight", "auth", "15%"}, "", 0},
		{"set-weight-wait", []string{"set-weight", "auth", "0.25", "--wait"}, "", 0},
		{"set-weight-wait-json", []string{"set-weight", "auth", "5", "--wait", "-o", "json"}, "", 0},
		{"set-weight-wait-yaml", []string{"set-weight", "auth", "5", "--wait", "-o", "yaml"}, "", 0},
		{"set-weight-lagging-json", []string{"set-weight", "lagging", "5%", "--wait", "-o", "json"}, "", 1},
		{"set-weight-lagging", []string{"set-weight", "lagging", "5%", "--wait"}, "", 1},
		{"set-weight-forbidden", []string{"set-weight", "locked", "5%"}, "", 1},
		{"set-weight-noleader", []string{"set-weight", "noleader", "5%"}, "", 1},
		{"set-weight-notmember", []string{"set-weight", "notmember", "5%"}, "", 1},
		{"set-weight-timeout", []string{"--timeout", "200ms", "set-weight", "slow", "5%"}, "", 1},
		{"apply", []string{"apply", "-f", manifest, "--wait"}, "", 0},
		{"apply-stdin-bad", []string{"apply", "-f", "-"}, "canary: {weight: 101%}\n", 1},
		{"delete", []string{"delete", "service", "auth"}, "", 0},
		{"pin-add", []string{"pin", "add", "auth", "10.9.0.0/16", "--pool", "canary"}, "", 0},
		{"pin-rm", []string{"pin", "rm", "auth", "10.9.0.0/16"}, "", 0},
		{"pin-ls", []string{"pin", "ls", "auth"}, "", 0},
		{"pin-ls-yaml", []string{"pin", "ls", "auth", "-o", "yaml"}, "", 0},
		{"members", []string{"members"}, "", 0},
		{"members-json", []string{"members", "-o", "json"}, "", 0},
		{"members-yaml", []string{"members", "-o", "yaml"}, "", 0},
		{"members-remove", []string{"members", "remove", "g2"}, "", 0},
		{"members-remove-unknown", []string{"members", "remove", "g9"}, "", 1},
		{"status", []string{"status"}, "", 0},
		{"status-json", []string{"status", "auth", "-o", "json"}, "", 0},
		{"status-yaml", []string{"status", "-o", "yaml"}, "", 0},
		{"get-service-yaml", []string{"get", "service", "auth", "-o", "yaml"}, "", 0},
		{"version", []string{"version"}, "", 0},
		{"version-json", []string{"version", "-o", "json"}, "", 0},
		{"usage-unknown-command", []string{"membres"}, "", 2},
		{"usage-unknown-subcommand", []string{"get", "servics"}, "", 2},
		{"usage-arg-count", []string{"set-weight", "auth"}, "", 2},
		{"usage-bad-weight", []string{"set-weight", "auth", "5.555"}, "", 2},
		{"usage-bad-output", []string{"-o", "xml", "members"}, "", 2},
		{"usage-unknown-flag", []string{"members", "--bogus"}, "", 2},
		{"get-releases", []string{"get", "releases"}, "", 0},
		{"rollout-status", []string{"rollout", "status", "auth-v2"}, "", 0},
		{"rollout-status-missing", []string{"rollout", "status", "nope"}, "", 1},
		{"rollout-start", []string{"rollout", "start", "auth-v2"}, "", 0},
		{"rollout-resume-refused", []string{"rollout", "resume", "auth-v2"}, "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, server := serve(t)
			args := append([]string{"--server", server}, tc.args...)
			out, code := graylanectl(args, tc.stdin, nil)
			out = strings.ReplaceAll(out, manifest, "auth.yaml")
			out = strings.ReplaceAll(out, server, "unix:///run/graylane/api.sock")
			if code != tc.code {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.code, out)
			}
			golden(t, tc.name, out)
		})
	}
}

// TestUsageErrors: a mistake in the arguments exits 2 with a message naming
// it, and sends nothing to the agent.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bogus"}, `unknown command "bogus"`},
		{[]string{"membres"}, `did you mean "members"?`},
		{[]string{"get", "services", "extra"}, `takes no arguments, got "extra"`},
		{[]string{"status", "a", "b"}, "accepts at most 1 arg(s), received 2"},
		{[]string{"version", "x"}, "takes no arguments"},
		{[]string{"members", "-o"}, "flag needs an argument"},
		{[]string{"--timeout", "soon", "members"}, `invalid argument "soon" for "--timeout"`},
		{[]string{"set-weight", "auth", "-5"}, "unknown shorthand flag: '5'"},
		{[]string{"set-weight", "auth", "--", "-5"}, `"-5"`},
		{[]string{"set-weight", "auth", "0.001%"}, "more than two decimals"},
		{[]string{"--bogus"}, "unknown flag: --bogus"},
		{[]string{"-o", "xml", "members"}, `-o "xml": use table, json or yaml`},
		{[]string{"set-weight", "auth"}, "accepts 2 arg(s), received 1"},
		{[]string{"set-weight", "auth", "5.555"}, `"5.555" has more than two decimals`},
		{[]string{"set-weight", "auth", "101%"}, "101%"},
		{[]string{"set-weight", "auth", "five"}, `"five"`},
		{[]string{"set-weight", "auth", "5", "--wait-timeout", "0s"}, "--wait-timeout 0s"},
		{[]string{"apply"}, "give the manifests with -f FILE"},
		{[]string{"apply", "-f", "/nonexistent/x.yaml"}, "/nonexistent/x.yaml"},
		{[]string{"get"}, "say what to get"},
		{[]string{"get", "service"}, "accepts 1 arg(s), received 0"},
		{[]string{"delete", "service"}, "accepts 1 arg(s), received 0"},
		{[]string{"pin", "add", "auth", "10.9.0.0/16"}, "--pool canary or --pool stable"},
		{[]string{"pin", "add", "auth", "10.9.0.0/16", "--pool", "blue"}, "--pool"},
		{[]string{"pin", "add", "auth", "10.9.0.1/16", "--pool", "canary"}, "did you mean 10.9.0.0/16"},
		{[]string{"pin", "rm", "auth", "ten"}, `"ten" is not a prefix`},
		{[]string{"members", "remove"}, "accepts 1 arg(s), received 0"},
		{[]string{"rollout"}, "say start, pause"},
		{[]string{"rollout", "start"}, "accepts 1 arg(s), received 0"},
		{[]string{"rollout", "status", "x", "--every", "1ms"}, "--every 1ms"},
		{[]string{"--timeout", "-1s", "members"}, "--timeout -1s"},
		{[]string{"--ca", "/nonexistent/ca.pem", "--server", "https://10.0.0.1:7443", "members"}, "--ca"},
		{[]string{"--server", "ftp://x", "members"}, "use unix:///path/to/socket or https://host:port"},
	} {
		f, server := serve(t)
		args := append([]string{"--server", server}, tc.args...)
		if tc.args[0] == "--server" {
			args = tc.args
		}
		out, code := graylanectl(args, "", nil)
		if code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("graylanectl %s: exit %d, output %q; want exit 2 and %q", strings.Join(tc.args, " "), code, out, tc.want)
		}
		if !strings.HasPrefix(out, "graylanectl: ") || !strings.HasSuffix(out, " --help' for usage.\n") || strings.Count(out, "\n") != 2 {
			t.Errorf("graylanectl %s: output %q; want one line 'graylanectl: …' and the --help hint", strings.Join(tc.args, " "), out)
		}
		if seen := f.Requests(); len(seen) > 0 {
			t.Errorf("graylanectl %s sent %v to the agent", strings.Join(tc.args, " "), seen)
		}
	}
}

// TestRequests: what reaches the agent — the weight normalized, --wait and
// its timeout, the token from the environment only over https.
func TestRequests(t *testing.T) {
	f, server := serve(t)
	for _, args := range [][]string{
		{"set-weight", "auth", "0.25"},
		{"set-weight", "auth", "15", "--wait", "--wait-timeout", "2s"},
		{"pin", "rm", "auth", "10.9.0.0/16", "--wait"},
		{"--consistent", "status", "auth"},
		{"--consistent", "get", "services"},
	} {
		if out, code := graylanectl(append([]string{"--server", server}, args...), "", nil); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, out)
		}
	}
	want := []string{
		`PUT /v1/services/auth/weight {"weight":"0.25%"}`,
		`PUT /v1/services/auth/weight?wait=applied&timeout=2s {"weight":"15%"}`,
		`DELETE /v1/services/auth/pins?wait=applied&timeout=5s&prefix=10.9.0.0%2F16`,
		`GET /v1/status?service=auth&consistent=true`,
		`GET /v1/services?consistent=true`,
	}
	if got := f.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestHelp: the help of every command, against golden files.
func TestHelp(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" {
			return
		}
		path := strings.Fields(c.CommandPath())[1:]
		name := "help-" + strings.Join(append([]string{"graylanectl"}, path...), "-")
		t.Run(name, func(t *testing.T) {
			out, code := graylanectl(append(path, "--help"), "", map[string]string{root.TokenEnv: "do-not-print"})
			if code != 0 {
				t.Errorf("exit %d", code)
			}
			if strings.Contains(out, "do-not-print") {
				t.Error("the help shows the token")
			}
			golden(t, name, out)
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root.New(nil, io.Discard, io.Discard, func(string) string { return "" }))
}

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
			out, code := graylanectl([]string{"--server", tc.server, "members"}, "", nil)
			if code != 1 {
				t.Errorf("exit %d, want 1; output:\n%s", code, out)
			}
			golden(t, tc.name, strings.ReplaceAll(out, dir, "/run/graylane"))
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
		out, code := graylanectl(append([]string{"--server", srv.URL}, tc.args...), "", tc.env)
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

// TestEveryCommandChecksArgs: a command without cli.Args would let cobra
// check its arguments, and a mistake there would exit 1 instead of 2.
func TestEveryCommandChecksArgs(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Name() != "help" && c.Args == nil {
			t.Errorf("%s has no Args check", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root.New(nil, io.Discard, io.Discard, func(string) string { return "" }))
}
