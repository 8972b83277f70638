package replay_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: replay's errors before anything is sent: a truncated file,
// an interface this host does not have. Neither needs privileges.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "truncated", Args: []string{"replay", "testdata/truncated.pcap", "--iface", "lo"}, Code: 1},
		{Name: "unknown-iface", Args: []string{"replay", "testdata/two.pcap", "--iface", "nosuch0"}, Code: 1},
		{Name: "missing-file", Args: []string{"replay", "testdata/nosuch.pcap", "--iface", "lo"}, Code: 2},
	})
}

// TestUsageErrors: a mistake in replay's arguments or flags exits 2 and
// names the flag.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"replay", "--iface", "lo"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"replay", "testdata/two.pcap"}, Want: "--iface is required"},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--speed", "0"}, Want: "--speed 0: give a factor above 0"},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--speed", "-1"}, Want: "--speed -1: give a factor above 0"},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--speed", "fast"}, Want: `invalid argument "fast" for "--speed"`},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--loop", "0"}, Want: "--loop 0: give 1 or more"},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--launch-time", "always"}, Want: `--launch-time "always": give auto or off`},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--rewrite-dst", "10.0.0.300"}, Want: `--rewrite-dst "10.0.0.300": give IP or IP:PORT`},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--rewrite-dst", "10.0.0.3:0"}, Want: `--rewrite-dst "10.0.0.3:0"`},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--rewrite-dst", "[fd00::1]:x"}, Want: "[IPv6]:PORT"},
		{Args: []string{"replay", "testdata/two.pcap", "--iface", "lo", "--rewrite-inner-dst", "x"}, Want: `--rewrite-inner-dst "x"`},
	})
}

// TestHelp: replay's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "replay")
}
