package apiserver

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// TestToAPIIdleAndMatch: the API form of a service carries its idle
// timeout (a duration, "never", or nothing for the default) and its match
// rules.
func TestToAPIIdleAndMatch(t *testing.T) {
	s := service.Service{Name: "web", VIP: netip.MustParseAddr("10.0.0.10"), Port: 80, Protocol: service.TCP, App: service.AppHTTP,
		IdleTimeout: 90 * time.Second,
		Match: []service.MatchRule{
			{Header: &service.FieldMatch{Name: "X-Canary", Value: "v2"}, Pool: service.Canary},
			{SNI: &service.SNIMatch{Name: "*.example.com"}, Pool: service.Stable},
		}}
	got := ToAPI(s)
	want := []api.MatchRule{
		{Header: &api.FieldMatch{Name: "X-Canary", Value: "v2"}, Pool: "canary"},
		{SNI: &api.SNIMatch{Name: "*.example.com"}, Pool: "stable"},
	}
	if got.IdleTimeout != "1m30s" || !reflect.DeepEqual(got.Match, want) {
		t.Errorf("ToAPI: idleTimeout %q, match %+v", got.IdleTimeout, got.Match)
	}
	for in, want := range map[time.Duration]string{0: "", service.NoIdleTimeout: "never"} {
		s.IdleTimeout = in
		if got := ToAPI(s).IdleTimeout; got != want {
			t.Errorf("idle timeout %v: %q, want %q", in, got, want)
		}
	}
}
