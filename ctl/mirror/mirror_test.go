package mirror_test

import (
	"testing"

	"github.com/graylane/graylane/internal/ctltest"
)

// TestOutput: mirror's output in every format and every way a write can
// go, and its exit code.
func TestOutput(t *testing.T) {
	ctltest.Outputs(t, []ctltest.Output{
		{Name: "mirror", Args: []string{"mirror", "auth", "--percent", "1", "--to", "mirror0"}},
		{Name: "mirror-capture-snaplen", Args: []string{"mirror", "auth", "--percent", "0.5%", "--to", "capture", "--snaplen", "256"}},
		{Name: "mirror-off", Args: []string{"mirror", "auth", "--off"}},
		{Name: "mirror-wait", Args: []string{"mirror", "auth", "--percent", "1%", "--to", "capture", "--wait"}},
		{Name: "mirror-wait-json", Args: []string{"mirror", "auth", "--off", "--wait", "-o", "json"}},
		{Name: "mirror-lagging", Args: []string{"mirror", "lagging", "--off", "--wait"}, Code: 1},
		{Name: "mirror-forbidden", Args: []string{"mirror", "locked", "--percent", "1%", "--to", "capture"}, Code: 1},
		{Name: "mirror-noleader", Args: []string{"mirror", "noleader", "--off"}, Code: 1},
		{Name: "usage-no-flags", Args: []string{"mirror", "auth"}, Code: 2},
		{Name: "usage-off-and-percent", Args: []string{"mirror", "auth", "--off", "--percent", "1%"}, Code: 2},
		{Name: "usage-bad-snaplen", Args: []string{"mirror", "auth", "--percent", "1%", "--to", "capture", "--snaplen", "32"}, Code: 2},
	})
}

// TestUsageErrors: a mistake in mirror's arguments or flags exits 2,
// names what is wrong and sends nothing.
func TestUsageErrors(t *testing.T) {
	ctltest.UsageErrors(t, []ctltest.Usage{
		{Args: []string{"mirror"}, Want: "accepts 1 arg(s), received 0"},
		{Args: []string{"mirror", "auth", "web", "--off"}, Want: "accepts 1 arg(s), received 2"},
		{Args: []string{"mirror", "auth"}, Want: "give --percent P and --to IFACE|capture to mirror, or --off to stop"},
		{Args: []string{"mirror", "auth", "--off", "--percent", "1%"}, Want: "--off takes no other flag"},
		{Args: []string{"mirror", "auth", "--off", "--to", "capture"}, Want: "--off takes no other flag"},
		{Args: []string{"mirror", "auth", "--off", "--snaplen", "64"}, Want: "--off takes no other flag"},
		{Args: []string{"mirror", "auth", "--percent", "1%"}, Want: "--to is required with --percent"},
		{Args: []string{"mirror", "auth", "--to", "capture"}, Want: "--percent is required with --to"},
		{Args: []string{"mirror", "auth", "--snaplen", "64"}, Want: "--percent is required with --to"},
		{Args: []string{"mirror", "auth", "--percent", "101%", "--to", "capture"}, Want: `--percent: weight "101%" is above 100%`},
		{Args: []string{"mirror", "auth", "--percent", "0.001", "--to", "capture"}, Want: "more than two decimals"},
		{Args: []string{"mirror", "auth", "--percent", "", "--to", "capture"}, Want: `--percent: "" is not a weight`},
		{Args: []string{"mirror", "auth", "--percent", "1%", "--to", ""}, Want: `--to: is required: an interface name or "capture"`},
		{Args: []string{"mirror", "auth", "--percent", "1%", "--to", "eth 0"}, Want: `--to: "eth 0" is not an interface name`},
		{Args: []string{"mirror", "auth", "--percent", "1%", "--to", "capture", "--snaplen", "63"}, Want: "--snaplen: 63 is outside 64..65535 bytes"},
		{Args: []string{"mirror", "auth", "--percent", "1%", "--to", "capture", "--snaplen", "65536"}, Want: "--snaplen: 65536 is outside 64..65535 bytes"},
		{Args: []string{"mirror", "auth", "--percent", "1%", "--to", "capture", "--snaplen", "-1"}, Want: `invalid argument "-1" for "--snaplen"`},
		{Args: []string{"mirror", "auth", "--percent", "1%", "--to", "capture", "--snaplen", "4294967360"}, Want: `invalid argument "4294967360" for "--snaplen"`},
		{Args: []string{"mirror", "auth", "--percent", "1%", "--to", "capture", "--snaplen", "big"}, Want: `invalid argument "big" for "--snaplen"`},
		{Args: []string{"mirror", "auth", "--off", "--wait-timeout", "0s"}, Want: "--wait-timeout 0s"},
	})
}

// TestRequests: the mirror reaches the agent normalized, with --wait and
// its timeout; --off alone is the request to stop.
func TestRequests(t *testing.T) {
	ctltest.Requests(t, [][]string{
		{"mirror", "auth", "--percent", "0.50", "--to", "mirror0"},
		{"mirror", "auth", "--percent", "1", "--to", "capture", "--snaplen", "256", "--wait", "--wait-timeout", "2s"},
		{"mirror", "auth", "--percent", "1", "--to", "capture", "--snaplen", "0"},
		{"mirror", "auth", "--off"},
	}, []string{
		`PUT /v1/services/auth/mirror {"percent":"0.5%","to":"mirror0"}`,
		`PUT /v1/services/auth/mirror?wait=applied&timeout=2s {"percent":"1%","to":"capture","snaplen":256}`,
		`PUT /v1/services/auth/mirror {"percent":"1%","to":"capture"}`,
		`PUT /v1/services/auth/mirror {"off":true}`,
	})
}

// TestHelp: mirror's help.
func TestHelp(t *testing.T) {
	ctltest.Help(t, "mirror")
}
