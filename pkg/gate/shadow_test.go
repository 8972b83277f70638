package gate

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
)

// TestShadowGate judges shadow outcomes against maxDiffering: at the
// bound passes, above fails, nothing compared fails, an error fails with
// it, and a runner without shadow support says so.
func TestShadowGate(t *testing.T) {
	g := release.Gate{Shadow: &release.ShadowGate{From: "capture", MaxDiffering: 10}, Timeout: time.Second} // 0.1 %
	canary := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:80")}
	for _, tc := range []struct {
		name    string
		outcome ShadowOutcome
		err     error
		pass    bool
		detail  string
	}{
		{"at the bound", ShadowOutcome{Compared: 1000, Differing: 1}, nil, true, "1 of 1000 compared answers differ (0.10%), at most the 0.1% allowed"},
		{"above", ShadowOutcome{Compared: 1000, Differing: 2, Detail: "body differs at .v on GET /doc/3"}, nil, false, "more than the 0.1% allowed; body differs at .v"},
		{"nothing compared", ShadowOutcome{Detail: "the capture held 0 requests"}, nil, false, "no request to compare: the capture held 0 requests"},
		{"error", ShadowOutcome{}, errors.New("capture: no agent"), false, "capture: no agent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := Options{Shadow: func(context.Context, release.ShadowGate, []netip.AddrPort) (ShadowOutcome, error) {
				return tc.outcome, tc.err
			}}
			r := Run(context.Background(), g, canary, opts)
			if r.Pass != tc.pass || !strings.Contains(r.Detail, tc.detail) {
				t.Errorf("pass %v, %q; want %v and %q", r.Pass, r.Detail, tc.pass, tc.detail)
			}
		})
	}
	if r := Run(context.Background(), g, canary, Options{}); r.Pass || !strings.Contains(r.Detail, "need an agent") {
		t.Errorf("without a shadow runner: %+v", r)
	}
}
