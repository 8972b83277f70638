package match

import (
	"net/netip"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// FuzzRules checks that any rule Service.Validate accepts matches the
// request it describes, and that neither function panics on odd strings.
func FuzzRules(f *testing.F) {
	f.Add("X-Canary", "v2", "*.example.com", "a.example.com")
	f.Add(":path", "/v2/", "beta.example.com.", "BETA.example.com")
	f.Add("", "", "*", "")
	f.Fuzz(func(t *testing.T, name, value, pattern, serverName string) {
		rules := []service.MatchRule{
			{Header: &service.FieldMatch{Name: name, Value: value}, Pool: service.Canary},
			{SNI: &service.SNIMatch{Name: pattern}, Pool: service.Canary},
		}
		svc := service.Service{
			Name: "auth", VIP: netip.MustParseAddr("10.0.0.10"), Port: 80, Protocol: service.TCP, App: service.AppHTTP,
			Stable: []service.Backend{{Addr: netip.MustParseAddrPort("10.1.0.11:8080")}},
			Canary: []service.Backend{{Addr: netip.MustParseAddrPort("10.2.0.11:8080")}},
			Match:  rules,
		}
		err := svc.Validate()
		_, index, ok := Decide(rules, Request{
			Headers: map[string][]string{name: {value}},
			SNI:     serverName,
		})
		if err == nil && (!ok || index != 0) {
			t.Fatalf("valid header rule %q=%q did not match its own request", name, value)
		}
		if ok && (index < 0 || index >= len(rules)) {
			t.Fatalf("Decide returned rule %d of %d", index, len(rules))
		}
	})
}
