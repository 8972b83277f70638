package match

import (
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

func header(name, value string) service.MatchRule {
	return service.MatchRule{Header: &service.FieldMatch{Name: name, Value: value}, Pool: service.Canary}
}

func TestDecide(t *testing.T) {
	rules := []service.MatchRule{
		header("X-Canary", "v2"),
		{Header: &service.FieldMatch{Name: "x-imsi", Prefix: "460"}, Pool: service.Canary},
		{Header: &service.FieldMatch{Name: "X-Debug", Present: true}, Pool: service.Stable},
		{GRPCMetadata: &service.FieldMatch{Name: "x-tenant", Value: "beta"}, Pool: service.Canary},
		{Header: &service.FieldMatch{Name: ":path", Prefix: "/v2/"}, Pool: service.Canary},
		{SNI: &service.SNIMatch{Name: "beta.example.com"}, Pool: service.Canary},
		{SNI: &service.SNIMatch{Name: "*.lab.example.com."}, Pool: service.Stable},
	}
	tests := []struct {
		name  string
		req   Request
		pool  service.Pool
		index int
		ok    bool
	}{
		{"nothing read", Request{}, service.Stable, -1, false},
		{"exact value", Request{Headers: map[string][]string{"x-canary": {"v2"}}}, service.Canary, 0, true},
		{"name case ignored", Request{Headers: map[string][]string{"X-CANARY": {"v2"}}}, service.Canary, 0, true},
		{"value case kept", Request{Headers: map[string][]string{"x-canary": {"V2"}}}, service.Stable, -1, false},
		{"value not a prefix match", Request{Headers: map[string][]string{"x-canary": {"v20"}}}, service.Stable, -1, false},
		{"any repeated value", Request{Headers: map[string][]string{"x-canary": {"v1", "v2"}}}, service.Canary, 0, true},
		{"comma list not split", Request{Headers: map[string][]string{"x-canary": {"v1, v2"}}}, service.Stable, -1, false},
		{"prefix", Request{Headers: map[string][]string{"x-imsi": {"460001234"}}}, service.Canary, 1, true},
		{"prefix too short", Request{Headers: map[string][]string{"x-imsi": {"46"}}}, service.Stable, -1, false},
		{"present empty", Request{Headers: map[string][]string{"x-debug": {""}}}, service.Stable, 2, true},
		{"first rule wins", Request{Headers: map[string][]string{"x-debug": {"1"}, "x-canary": {"v2"}}}, service.Canary, 0, true},
		{"metadata needs grpc", Request{Headers: map[string][]string{"x-tenant": {"beta"}}}, service.Stable, -1, false},
		{"metadata", Request{GRPC: true, Headers: map[string][]string{"x-tenant": {"beta"}}}, service.Canary, 3, true},
		{"pseudo path", Request{Headers: map[string][]string{":path": {"/v2/users"}}}, service.Canary, 4, true},
		{"sni exact", Request{SNI: "beta.example.com"}, service.Canary, 5, true},
		{"sni case and dot", Request{SNI: "BETA.Example.com."}, service.Canary, 5, true},
		{"sni other", Request{SNI: "alpha.example.com"}, service.Stable, -1, false},
		{"wildcard one label", Request{SNI: "a.lab.example.com"}, service.Stable, 6, true},
		{"wildcard two labels", Request{SNI: "a.b.lab.example.com"}, service.Stable, 6, true},
		{"wildcard not the domain", Request{SNI: "lab.example.com"}, service.Stable, -1, false},
		{"wildcard not a longer label", Request{SNI: "xlab.example.com"}, service.Stable, -1, false},
		{"wildcard empty label", Request{SNI: ".lab.example.com"}, service.Stable, -1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, index, ok := Decide(rules, tt.req)
			if pool != tt.pool || index != tt.index || ok != tt.ok {
				t.Errorf("Decide = %s, %d, %t; want %s, %d, %t", pool, index, ok, tt.pool, tt.index, tt.ok)
			}
		})
	}
}

func TestDecideEmptyRules(t *testing.T) {
	if _, _, ok := Decide(nil, Request{SNI: "a.example.com"}); ok {
		t.Fatal("no rules matched a request")
	}
	// A rule without a condition, which Validate rejects, matches nothing.
	if _, _, ok := Decide([]service.MatchRule{{Pool: service.Canary}}, Request{SNI: "a"}); ok {
		t.Fatal("a rule without a condition matched")
	}
}
