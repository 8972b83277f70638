package shadow_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/ctltest"
	"github.com/graylane/graylane/internal/shadowtest"
)

var (
	server = netip.MustParseAddrPort("10.0.0.10:80")
	// The application answers /items/{i} with {"id":i}; X-Build changes.
	items = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Build", "2")
		id := strings.TrimPrefix(r.URL.Path, "/items/")
		if id == "7" {
			id = "70"
		}
		fmt.Fprintf(w, `{"id":%s}`, id)
	})
)

// captureFiles writes a capture of 20 GETs and a POST in dir, whole and
// cut to the headers, and returns their paths.
func captureFiles(t *testing.T, dir string) (whole, headers string) {
	c := shadowtest.New()
	k := c.Dial(netip.MustParseAddrPort("10.9.0.1:40000"), server)
	for i := range 20 {
		k.Send([]byte(fmt.Sprintf("GET /items/%d HTTP/1.1\r\nHost: a\r\n\r\n", i)))
		c.Advance(time.Millisecond)
		body := fmt.Sprintf(`{ "id": %d }`, i)
		k.Reply([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Build: 1\r\nContent-Length: %d\r\n\r\n%s", len(body), body)))
	}
	k.Send([]byte("POST /items HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"))
	k.Reply([]byte("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
	whole, headers = filepath.Join(dir, "auth.pcapng"), filepath.Join(dir, "headers.pcapng")
	for path, data := range map[string][]byte{whole: c.PcapNG(false), headers: c.PcapNG(true)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return whole, headers
}

func target(t *testing.T) string {
	srv := httptest.NewServer(items)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// TestOutput: shadow's output, and its failures, in every format.
func TestOutput(t *testing.T) {
	dir := t.TempDir()
	whole, headers := captureFiles(t, dir)
	os.WriteFile(filepath.Join(dir, "cut.pcapng"), mustRead(t, whole)[:400], 0o600)
	to := target(t)
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "missing", Args: []string{"shadow", "nope", "--from", whole}, Code: 1},
		{Name: "headers-only", Args: []string{"shadow", "auth", "--from", headers, "--to", to}, Code: 1},
		{Name: "truncated", Args: []string{"shadow", "auth", "--from", filepath.Join(dir, "cut.pcapng"), "--to", to}, Code: 1},
		{Name: "udp-service", Args: []string{"shadow", "dns", "--from", whole, "--to", "stable", "--replay-timeout", "1ms", "--speed", "max"}, Code: 0},
		{Name: "usage-no-from", Args: []string{"shadow", "auth"}, Code: 2},
		{Name: "usage-speed-zero", Args: []string{"shadow", "auth", "--from", whole, "--speed", "0"}, Code: 2},
	}, dir, "/tmp/shadow", to, "127.0.0.1:18080")
}

func mustRead(t *testing.T, path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// latencyRows and durations are the parts of a report that change from run to run: the
// latency table (its widths too) and the durations in JSON.
var (
	latencyRows = regexp.MustCompile(`(?m)^(LATENCY|recorded|127\.0\.0\.1:18080) .*$`)
	durations   = regexp.MustCompile(`("?(p50|p99|took)"?): [0-9]+`)
)

var msValue = regexp.MustCompile(`[0-9.]+ms`)

// TestReport: a replay to an address, its table and its JSON: the
// changed field is found, X-Build ignored when asked, the POST skipped.
func TestReport(t *testing.T) {
	dir := t.TempDir()
	whole, _ := captureFiles(t, dir)
	_, server := ctltest.Serve(t)
	to := target(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"report", []string{"--from", whole, "--to", to, "--ignore-header", "x-build"}},
		{"report-header", []string{"--from", whole, "--to", to, "--speed", "4"}},
		{"report-json", []string{"--from", whole, "--to", to, "--speed", "max", "--ignore-header", "X-Build", "-o", "json"}},
		{"report-yaml", []string{"--from", whole, "--to", to, "--speed", "max", "--ignore-header", "X-Build", "--methods", "get,post", "-o", "yaml"}},
	} {
		out, code := ctltest.Run(append([]string{"--server", server, "shadow", "auth"}, tc.args...), "", nil)
		out = strings.ReplaceAll(strings.ReplaceAll(out, dir, "/tmp/shadow"), to, "127.0.0.1:18080")
		out = latencyRows.ReplaceAllStringFunc(out, func(s string) string {
			return strings.Join(msValue.Split(strings.Join(strings.Fields(s), " "), -1), "1.000ms")
		})
		out = durations.ReplaceAllString(out, "$1: 1000000")
		if code != 0 {
			t.Errorf("%s: exit %d", tc.name, code)
		}
		ctltest.Golden(t, ctltest.Testdata, tc.name, out)
		if tc.name == "report-json" {
			var r struct{ Compared, Differing int }
			if err := json.Unmarshal([]byte(out), &r); err != nil || r.Compared != 20 || r.Differing != 1 {
				t.Errorf("JSON %+v (%v)", r, err)
			}
		}
	}
}

// TestUsageErrors: a mistake in shadow's arguments or flags exits 2,
// names what is wrong and sends nothing.
func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	whole, _ := captureFiles(t, dir)
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"shadow"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"shadow", "auth"}, Want: "say which capture to replay: --from FILE"},
		{Args: []string{"shadow", "auth", "--from", filepath.Join(dir, "none")}, Want: "--from: open " + filepath.Join(dir, "none") + ": no such file"},
		{Args: []string{"shadow", "auth", "--from", whole, "--speed", "0"}, Want: "--speed 0: give a factor above 0"},
		{Args: []string{"shadow", "auth", "--from", whole, "--speed", "-2"}, Want: "--speed -2"},
		{Args: []string{"shadow", "auth", "--from", whole, "--speed", "fast"}, Want: "--speed fast"},
		{Args: []string{"shadow", "auth", "--from", whole, "--speed", "NaN"}, Want: "--speed NaN"},
		{Args: []string{"shadow", "auth", "--from", whole, "--to", "green"}, Want: "--to green: give canary, stable or ADDR:PORT"},
		{Args: []string{"shadow", "auth", "--from", whole, "--to", ""}, Want: "--to: give canary, stable or ADDR:PORT"},
		{Args: []string{"shadow", "auth", "--from", whole, "--methods", "GET,PO ST"}, Want: `--methods: "PO ST" is not an HTTP method`},
		{Args: []string{"shadow", "auth", "--from", whole, "--methods", ""}, Want: "--methods: give one or more methods"},
		{Args: []string{"shadow", "auth", "--from", whole, "--ignore-header", "a:b"}, Want: `--ignore-header: "a:b" is not a header name`},
		{Args: []string{"shadow", "auth", "--from", whole, "--examples", "-1"}, Want: "--examples -1"},
		{Args: []string{"shadow", "auth", "--from", whole, "--replay-timeout", "0s"}, Want: "--replay-timeout 0s"},
	})
}

// TestHelp: shadow's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "shadow")
}
