package manifest

import (
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
)

// TestShadowGate reads shadow gates: defaults (capture 30s of 10 % of
// new flows, a timeout of twice that and a minute), every field, a file
// source, and the round trip through MarshalAll.
func TestShadowGate(t *testing.T) {
	in := strings.Replace(relDoc, "    - verify: [{tcp: {}, timeout: 1s}]\n", `    - verify:
        - shadow: {from: capture}
        - shadow: {from: capture, maxDiffering: 0.1%, duration: 10s, percent: 50%}
          timeout: 45s
        - shadow: {from: stable-web.pcapng, maxDiffering: 1%}
`, 1)
	set, err := ParseAll("x.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	gates := set.Releases[0].Steps[4].Verify
	want := []release.Gate{
		{Shadow: &release.ShadowGate{From: "capture", Duration: 30 * time.Second, Percent: 1000}, Timeout: 2 * time.Minute},
		{Shadow: &release.ShadowGate{From: "capture", MaxDiffering: 10, Duration: 10 * time.Second, Percent: 5000}, Timeout: 45 * time.Second},
		{Shadow: &release.ShadowGate{From: "stable-web.pcapng", MaxDiffering: 100, Duration: 30 * time.Second, Percent: 1000}, Timeout: 2 * time.Minute},
	}
	if len(gates) != len(want) {
		t.Fatalf("%d gates, want %d", len(gates), len(want))
	}
	for i := range want {
		if *gates[i].Shadow != *want[i].Shadow || gates[i].Timeout != want[i].Timeout {
			t.Errorf("gate %d: %+v (timeout %v), want %+v (timeout %v)", i, *gates[i].Shadow, gates[i].Timeout, *want[i].Shadow, want[i].Timeout)
		}
	}
	roundTrip(t, set)
}

// TestShadowGateErrors: every bad shadow gate gets an error naming the
// field.
func TestShadowGateErrors(t *testing.T) {
	for _, tc := range []struct{ gate, want string }{
		{"{shadow: {}}", "spec.steps[4].verify[0].shadow.from: is required"},
		{"{shadow: {from: /etc/shadow}}", `spec.steps[4].verify[0].shadow.from: "/etc/shadow": give capture, or a file name`},
		{"{shadow: {from: ../x.pcapng}}", `spec.steps[4].verify[0].shadow.from: "../x.pcapng"`},
		{"{shadow: {from: capture, maxDiffering: 150%}}", "shadow.maxDiffering"},
		{"{shadow: {from: capture, duration: 10m}}", "spec.steps[4].verify[0].shadow.duration: 10m0s: give how long to capture"},
		{"{shadow: {from: capture, percent: 0}}", "spec.steps[4].verify[0].shadow.percent"},
		{"{shadow: {from: capture, duration: 30s}, timeout: 20s}", "spec.steps[4].verify[0].timeout: 20s leaves no time to replay"},
		{"{shadow: {from: capture}, tcp: {}}", "gives tcp and shadow: one gate does one check"},
	} {
		in := strings.Replace(relDoc, "    - verify: [{tcp: {}, timeout: 1s}]\n", "    - verify: ["+tc.gate+"]\n", 1)
		_, err := ParseAll("x.yaml", []byte(in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.gate, err, tc.want)
		}
	}
}
