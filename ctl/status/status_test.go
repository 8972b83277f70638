package status_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/api"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: status's output in every format, and its exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "status", Args: []string{"status"}},
		{Name: "status-json", Args: []string{"status", "auth", "-o", "json"}},
		{Name: "status-yaml", Args: []string{"status", "-o", "yaml"}},
	})
}

// TestUsageErrors: a mistake in status's arguments exits 2 and sends
// nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"status", "a", "b"}, Want: "accepts at most 1 arg(s), received 2"},
		{Args: []string{"status", "--interval", "5s"}, Want: "--interval: only with --watch"},
		{Args: []string{"status", "--count", "3"}, Want: "--count: only with --watch"},
		{Args: []string{"status", "--watch", "--interval", "10ms"}, Want: "--interval 10ms: give 500ms to 1h0m0s"},
		{Args: []string{"status", "--watch", "--count", "-1"}, Want: "--count -1: give 0 (until interrupted) or more"},
	})
}

// TestRequests: the service and --consistent reach the agent.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"--consistent", "status", "auth"},
	}, []string{
		`GET /v1/status?service=auth&consistent=true`,
	})
}

// TestHelp: status's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "status")
}

// TestWatch: piped, --watch prints each refresh after a line with its
// time, and --count ends it; with -o json each refresh is one document.
func TestWatch(t *testing.T) {
	_, server := ctltest.Serve(t)
	out, code := ctltest.Run([]string{"--server", server, "status", "--watch", "--interval", "500ms", "--count", "2"}, "", nil)
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, out)
	}
	if n := strings.Count(out, "\n--- ") + boolInt(strings.HasPrefix(out, "--- ")); n != 2 {
		t.Errorf("%d refreshes, want 2:\n%s", n, out)
	}
	if n := strings.Count(out, "SERVICE  DESIRED"); n != 2 {
		t.Errorf("%d tables, want 2:\n%s", n, out)
	}
	if strings.Contains(out, "\x1b[") {
		t.Errorf("terminal escapes in piped output:\n%q", out)
	}

	out, code = ctltest.Run([]string{"--server", server, "status", "-w", "--interval", "500ms", "--count", "2", "-o", "json"}, "", nil)
	if code != 0 {
		t.Fatalf("exit code %d: %s", code, out)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	docs := 0
	for {
		var st api.Status
		if err := dec.Decode(&st); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("document %d: %v\n%s", docs+1, err, out)
		}
		docs++
	}
	if docs != 2 {
		t.Errorf("%d JSON documents, want 2", docs)
	}
}

// TestWatchStopsOnFirstError: a watch whose first refresh fails (no such
// service) exits with the error instead of scrolling it by.
func TestWatchStopsOnFirstError(t *testing.T) {
	out, code := ctltest.Run([]string{"--server", "unix:///nonexistent/api.sock", "status", "--watch", "--count", "3"}, "", nil)
	if code != 1 || !strings.Contains(out, "nonexistent") {
		t.Errorf("exit code %d, output %q: want 1 and the socket named", code, out)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
