package match

import (
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// FuzzRules checks that any rule Validate accepts matches the request it
// describes, and that neither function panics on odd strings.
func FuzzRules(f *testing.F) {
	f.Add("X-Canary", "v2", "*.example.com", "a.example.com")
	f.Add(":path", "/v2/", "beta.example.com.", "BETA.example.com")
	f.Add("", "", "*", "")
	f.Fuzz(func(t *testing.T, name, value, pattern, serverName string) {
		rules := []Rule{
			{Header: &FieldCondition{Name: name, Value: value}, Pool: service.Canary},
			{SNI: &SNICondition{Name: pattern}, Pool: service.Canary},
		}
		errs := Validate("http", "tcp", rules)
		_, index, ok := Decide(rules, Request{
			Headers: map[string][]string{name: {value}},
			SNI:     serverName,
		})
		if len(errs) == 0 && (!ok || index != 0) {
			t.Fatalf("valid header rule %q=%q did not match its own request", name, value)
		}
		if ok && (index < 0 || index >= len(rules)) {
			t.Fatalf("Decide returned rule %d of %d", index, len(rules))
		}
	})
}
