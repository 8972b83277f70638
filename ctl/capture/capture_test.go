package capture_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/ctl/root"
	"github.com/graylane/graylane/internal/ctltest"
)

// dir is where the golden files say the captures went.
const dir = "/tmp/captures"

// TestOutput: capture's output to a file and to stdout, in the formats,
// and every way it fails, with its exit code.
func TestOutput(t *testing.T) {
	tmp := t.TempDir()
	file := func(name string) string { return filepath.Join(tmp, name) }
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "capture-file", Args: []string{"capture", "auth", "-w", file("auth.pcapng")}},
		{Name: "capture-file-json", Args: []string{"capture", "auth", "--count", "10", "-w", file("auth.pcapng"), "-o", "json"}},
		{Name: "capture-stdout", Args: []string{"capture", "auth", "-w", "-"}},
		{Name: "capture-missing", Args: []string{"capture", "nope", "-w", file("nope.pcapng")}, Code: 1},
		{Name: "capture-forbidden", Args: []string{"capture", "locked", "-w", file("locked.pcapng")}, Code: 1},
		{Name: "capture-broken", Args: []string{"capture", "broken", "-w", file("broken.pcapng")}, Code: 1},
		{Name: "capture-broken-stdout", Args: []string{"capture", "broken", "-w", "-"}, Code: 1},
		{Name: "capture-slow", Args: []string{"--timeout", "100ms", "capture", "slow", "--count", "1", "-w", file("slow.pcapng")}, Code: 1},
		{Name: "usage-no-write", Args: []string{"capture", "auth"}, Code: 2},
		{Name: "usage-snaplen-and-payload", Args: []string{"capture", "auth", "--snaplen", "128", "--payload", "-w", "-"}, Code: 2},
	}, tmp, dir)
}

// TestFile: the stream lands in the file, made mode 0600; a refused
// capture leaves no file, and does not touch one already there; a stream
// cut off keeps the bytes that arrived.
func TestFile(t *testing.T) {
	_, server := ctltest.Serve(t)
	tmp := t.TempDir()
	capture := func(name, path string) int {
		_, code := ctltest.Run([]string{"--server", server, "capture", name, "-w", path}, "", nil)
		return code
	}
	good := filepath.Join(tmp, "auth.pcapng")
	if code := capture("auth", good); code != 0 {
		t.Fatalf("exit %d", code)
	}
	checkFile(t, good, ctltest.CaptureStream, 0o600)

	missing := filepath.Join(tmp, "nope.pcapng")
	if code := capture("nope", missing); code != 1 {
		t.Fatalf("exit %d", code)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a refused capture left %s (%v)", missing, err)
	}
	existing := filepath.Join(tmp, "old.pcapng")
	if err := os.WriteFile(existing, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code := capture("locked", existing); code != 1 {
		t.Fatalf("exit %d", code)
	}
	checkFile(t, existing, "old", 0o644)

	broken := filepath.Join(tmp, "broken.pcapng")
	if code := capture("broken", broken); code != 1 {
		t.Fatalf("exit %d", code)
	}
	checkFile(t, broken, ctltest.CaptureStream, 0o600)
}

func checkFile(t *testing.T, path, want string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil || string(data) != want {
		t.Fatalf("%s holds %q (%v), want %q", path, data, err, want)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != mode {
		t.Errorf("%s: mode %v (%v), want %v", path, st.Mode().Perm(), err, mode)
	}
}

// TestInterrupt: Ctrl-C (the context cancelled) during the stream stops
// the capture and keeps what arrived, exit 0; before the stream begins, it
// fails and writes nothing.
func TestInterrupt(t *testing.T) {
	_, server := ctltest.Serve(t)
	tmp := t.TempDir()
	for _, tc := range []struct {
		name, file, want string
		code             int
		held             string // the file's bytes after; "" none
	}{
		{"endless", "endless.pcapng", "interrupted: the file holds what arrived until then", 0, ctltest.CaptureStream},
		{"slow", "slow.pcapng", "interrupted before the capture began: nothing was written", 1, ""},
	} {
		path := filepath.Join(tmp, tc.file)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		var out strings.Builder
		var code int
		go func() {
			defer close(done)
			code = root.Run(ctx, []string{"--server", server, "capture", tc.name, "-w", path}, strings.NewReader(""), &out, &out, func(string) string { return "" })
		}()
		// Ctrl-C once the file has bytes, or soon for a stream that never
		// begins.
		if tc.held == "" {
			time.Sleep(200 * time.Millisecond)
		}
		for deadline := time.Now().Add(5 * time.Second); tc.held != "" && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if st, err := os.Stat(path); err == nil && st.Size() > 0 {
				break
			}
		}
		cancel()
		<-done
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%s: exit %d, output %q; want exit %d and %q", tc.name, code, out.String(), tc.code, tc.want)
		}
		if tc.held == "" {
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("%s: left %s (%v)", tc.name, path, err)
			}
			continue
		}
		checkFile(t, path, tc.held, 0o600)
	}
}

// TestUsageErrors: a mistake in capture's flags exits 2, names the flag
// and sends nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"capture", "-w", "-"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"capture", "auth"}, Want: "-w FILE, or -w - for stdout"},
		{Args: []string{"capture", "auth", "-w", ""}, Want: "-w FILE, or -w - for stdout"},
		{Args: []string{"capture", "auth", "--snaplen", "128", "--payload", "-w", "-"}, Want: "--snaplen and --payload exclude each other"},
		{Args: []string{"capture", "auth", "--snaplen", "63", "-w", "-"}, Want: "--snaplen 63: give a number of bytes from 64 to 65535"},
		{Args: []string{"capture", "auth", "--snaplen", "65536", "-w", "-"}, Want: "--snaplen 65536"},
		{Args: []string{"capture", "auth", "--count", "0", "-w", "-"}, Want: "--count 0: give 1 or more packets"},
		{Args: []string{"capture", "auth", "--count", "-3", "-w", "-"}, Want: "--count -3"},
		{Args: []string{"capture", "auth", "--duration", "0s", "-w", "-"}, Want: "--duration 0s: give a positive duration"},
		{Args: []string{"capture", "auth", "--duration", "-1m", "-w", "-"}, Want: "--duration -1m0s"},
		{Args: []string{"capture", "auth", "--duration", "10", "-w", "-"}, Want: `invalid argument "10" for "--duration"`},
		{Args: []string{"capture", "auth", "--percent", "101", "-w", "-"}, Want: `--percent: weight "101" is above 100%`},
		{Args: []string{"capture", "auth", "--percent", "0", "-w", "-"}, Want: "--percent 0%: nothing would be captured"},
		{Args: []string{"capture", "auth", "--percent", "x", "-w", "-"}, Want: `--percent: "x" is not a weight`},
		{Args: []string{"capture", "auth", "--node", "", "-w", "-"}, Want: "--node: give a node's name, or all"},
	})
}

// TestRequests: the capture's query carries exactly the flags given,
// normalized, with the default duration when neither it nor a count is.
func TestRequests(t *testing.T) {
	out := filepath.Join(t.TempDir(), "c.pcapng")
	ctltest.Requests(t, [][]string{
		{"capture", "auth", "-w", out},
		{"capture", "auth", "--count", "100", "-w", out},
		{"capture", "auth", "--percent", "0.50", "--duration", "1m30s", "--count", "5", "--node", "all", "--snaplen", "128", "--redact", "-w", "-"},
		{"capture", "auth", "--node", "gw-1", "--payload", "-w", out},
	}, []string{
		"GET /v1/services/auth/capture?duration=10s",
		"GET /v1/services/auth/capture?count=100",
		"GET /v1/services/auth/capture?percent=0.5%25&duration=1m30s&count=5&node=all&snaplen=128&redact=true",
		"GET /v1/services/auth/capture?duration=10s&node=gw-1&payload=true",
	})
}

// TestHelp: capture's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "capture")
}
