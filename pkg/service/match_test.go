package service

import (
	"reflect"
	"strings"
	"testing"
)

func header(name, value string) MatchRule {
	return MatchRule{Header: &FieldMatch{Name: name, Value: value}, Pool: Canary}
}

func metadata(name, value string) MatchRule {
	return MatchRule{GRPCMetadata: &FieldMatch{Name: name, Value: value}, Pool: Canary}
}

func sni(name string) MatchRule {
	return MatchRule{SNI: &SNIMatch{Name: name}, Pool: Canary}
}

// withRules returns the valid service with app, protocol and rules, and no
// pins: only the rules can be wrong.
func withRules(app App, protocol Protocol, rules ...MatchRule) Service {
	s := valid()
	s.App, s.Protocol, s.Pins, s.Match = app, protocol, nil, rules
	return s
}

// matchErrors returns the problems Validate finds in s.
func matchErrors(t *testing.T, s Service) []*FieldError {
	t.Helper()
	return fieldErrors(t, s.Validate())
}

func hasError(fes []*FieldError, path, msg string) bool {
	for _, fe := range fes {
		if fe.Path == path && strings.Contains(fe.Msg, msg) {
			return true
		}
	}
	return false
}

func TestMatchValid(t *testing.T) {
	every := withRules(AppGRPC, TCP,
		header("X-Canary", "v2"),
		MatchRule{Header: &FieldMatch{Name: ":authority", Prefix: "beta."}, Pool: Canary},
		MatchRule{Header: &FieldMatch{Name: "x-debug", Present: true}, Pool: Stable},
		metadata("x-canary", "v2"),
		sni("beta.example.com"),
		sni("*.example.com."),
		sni("_svc.internal"),
	)
	for name, s := range map[string]Service{
		"every form on grpc":   every,
		"header on http":       withRules(AppHTTP, TCP, header("X-Canary", "v2")),
		"sni on app none":      withRules(AppNone, TCP, sni("beta.example.com")),
		"sni without app":      withRules("", TCP, sni("beta.example.com")),
		"no rules on udp":      withRules(AppNone, UDP),
		"most rules":           withRules(AppHTTP, TCP, manyRules(MaxMatchRules)...),
		"longest value":        withRules(AppHTTP, TCP, header("a", strings.Repeat("v", MaxMatchValueBytes))),
		"value with inner tab": withRules(AppHTTP, TCP, header("a", "v\t2")),
	} {
		if fes := matchErrors(t, s); len(fes) != 0 {
			t.Errorf("%s: %v", name, fes)
		}
	}
}

func manyRules(n int) []MatchRule {
	rules := make([]MatchRule, n)
	for i := range rules {
		rules[i] = header("x-n", strings.Repeat("v", i+1))
	}
	return rules
}

func TestMatchRejects(t *testing.T) {
	long := strings.Repeat("a", MaxMatchValueBytes+1)
	tests := []struct {
		name     string
		app      App
		protocol Protocol
		rule     MatchRule
		path     string
		msg      string
	}{
		{"app missing", "", TCP, header("X-Canary", "v2"), "spec.match[0].header", "needs app: http or app: grpc (the service has app: none); for TLS services match on sni"},
		{"app none", AppNone, TCP, header("X-Canary", "v2"), "spec.match[0].header", "needs app: http or app: grpc"},
		{"metadata on http", AppHTTP, TCP, metadata("x-canary", "v2"), "spec.match[0].grpcMetadata", "needs app: grpc (the service has app: http); for plain HTTP use a header rule"},
		{"metadata on app none", AppNone, TCP, metadata("x-canary", "v2"), "spec.match[0].grpcMetadata", "needs app: grpc (the service has app: none)"},
		{"sni on udp", AppNone, UDP, sni("a.example.com"), "spec.match[0].sni", "needs protocol: tcp (the service has protocol: udp); match rules read a TCP stream"},
		{"header on udp", AppHTTP, UDP, header("a", "b"), "spec.match[0].header", "needs protocol: tcp"},
		{"no condition", AppHTTP, TCP, MatchRule{Pool: Canary}, "spec.match[0]", "has no condition: set one of header, grpcMetadata or sni"},
		{"two conditions", AppHTTP, TCP, MatchRule{Header: &FieldMatch{Name: "a", Value: "b"}, SNI: &SNIMatch{Name: "a.b"}},
			"spec.match[0]", "has header and sni; a rule has exactly one condition: split it into one rule each"},
		{"three conditions", AppGRPC, TCP, MatchRule{Header: &FieldMatch{Name: "a", Value: "b"}, GRPCMetadata: &FieldMatch{Name: "a", Value: "b"}, SNI: &SNIMatch{Name: "a.b"}},
			"spec.match[0]", "has header and grpcMetadata and sni"},
		{"bad pool", AppHTTP, TCP, MatchRule{Header: &FieldMatch{Name: "a", Value: "b"}, Pool: 7}, "spec.match[0].pool", "pool(7) is not a pool: use stable or canary"},
		{"empty header name", AppHTTP, TCP, header("", "v2"), "spec.match[0].header.name", "is empty: name the header to match"},
		{"header name not a token", AppHTTP, TCP, header("X Canary", "v2"), "spec.match[0].header.name", `"X Canary" is not a valid header name`},
		{"header name with colon", AppHTTP, TCP, header("X-Canary:", "v2"), "spec.match[0].header.name", "not a valid header name"},
		{"header name too long", AppHTTP, TCP, header(long, "v2"), "spec.match[0].header.name", "is 257 bytes long; a name has at most 128"},
		{"unknown pseudo", AppHTTP, TCP, header(":status", "200"), "spec.match[0].header.name", `":status" is not a request pseudo-header: use one of :method, :path, :authority, :scheme`},
		{"uppercase pseudo", AppHTTP, TCP, header(":Path", "/"), "spec.match[0].header.name", "use one of :method"},
		{"value and prefix", AppHTTP, TCP, MatchRule{Header: &FieldMatch{Name: "a", Value: "b", Prefix: "c"}},
			"spec.match[0].header", "sets both value and prefix; set only one"},
		{"value and present", AppHTTP, TCP, MatchRule{Header: &FieldMatch{Name: "a", Value: "b", Present: true}},
			"spec.match[0].header", "sets both value and present"},
		{"no value", AppHTTP, TCP, MatchRule{Header: &FieldMatch{Name: "a"}}, "spec.match[0].header", "needs one of value, prefix or present: true"},
		{"value too long", AppHTTP, TCP, header("a", long), "spec.match[0].header.value", "is 257 bytes long; at most 256 are matched: use a prefix of it"},
		{"prefix too long", AppHTTP, TCP, MatchRule{Header: &FieldMatch{Name: "a", Prefix: long}}, "spec.match[0].header.prefix", "use a prefix"},
		{"value with newline", AppHTTP, TCP, header("a", "v\r\nx: y"), "spec.match[0].header.value", "contains a control character"},
		{"value with space", AppHTTP, TCP, header("a", "v2 "), "spec.match[0].header.value", "starts or ends with a space or tab"},
		{"metadata uppercase", AppGRPC, TCP, metadata("X-Canary", "v2"), "spec.match[0].grpcMetadata.name", `uppercase letters; gRPC metadata keys are lowercase: use "x-canary"`},
		{"metadata bad char", AppGRPC, TCP, metadata("x canary", "v2"), "spec.match[0].grpcMetadata.name", "not a valid gRPC metadata key"},
		{"metadata binary", AppGRPC, TCP, metadata("x-trace-bin", "AAE="), "spec.match[0].grpcMetadata.name", "is a binary key"},
		{"metadata pseudo", AppGRPC, TCP, metadata(":path", "/a"), "spec.match[0].grpcMetadata.name", "is a pseudo-header, not metadata: use a header rule for it"},
		{"metadata empty", AppGRPC, TCP, metadata("", "v2"), "spec.match[0].grpcMetadata.name", "is empty"},
		{"metadata too long", AppGRPC, TCP, metadata(long, "v2"), "spec.match[0].grpcMetadata.name", "a key has at most 128"},
		{"metadata no value", AppGRPC, TCP, MatchRule{GRPCMetadata: &FieldMatch{Name: "a"}}, "spec.match[0].grpcMetadata", "needs one of value"},
		{"sni empty", "", TCP, sni(""), "spec.match[0].sni.name", "is empty"},
		{"sni ip", "", TCP, sni("10.0.0.1"), "spec.match[0].sni.name", `"10.0.0.1" is an IP address`},
		{"sni ipv6", "", TCP, sni("[2001:db8::1]"), "spec.match[0].sni.name", "is an IP address"},
		{"sni inner star", "", TCP, sni("a.*.example.com"), "spec.match[0].sni.name", "misplaced *"},
		{"sni partial star", "", TCP, sni("beta*.example.com"), "spec.match[0].sni.name", "misplaced *"},
		{"sni tld wildcard", "", TCP, sni("*.com"), "spec.match[0].sni.name", "would match names under a top-level domain"},
		{"sni bad char", "", TCP, sni("beta example.com"), "spec.match[0].sni.name", "not a host name"},
		{"sni empty label", "", TCP, sni("beta..example.com"), "spec.match[0].sni.name", "not a host name"},
		{"sni hyphen label", "", TCP, sni("-beta.example.com"), "spec.match[0].sni.name", "not a host name"},
		{"sni too long", "", TCP, sni(strings.Repeat("abc.", 64) + "com"), "spec.match[0].sni.name", "at most 253"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fes := matchErrors(t, withRules(tt.app, tt.protocol, tt.rule))
			if len(fes) != 1 || !hasError(fes, tt.path, tt.msg) {
				t.Errorf("Validate = %v; want one error at %s saying %q", fes, tt.path, tt.msg)
			}
		})
	}
}

func TestMatchPoolWithoutBackends(t *testing.T) {
	s := withRules(AppHTTP, TCP, header("X-Canary", "v2"))
	s.Canary, s.CanaryWeight = nil, 0
	fes := matchErrors(t, s)
	if len(fes) != 1 || !hasError(fes, "spec.match[0].pool", "sends matching connections to the canary pool, which has no backends") {
		t.Fatalf("Validate = %v; want the empty pool named", fes)
	}
}

func TestMatchTooManyRules(t *testing.T) {
	fes := matchErrors(t, withRules(AppHTTP, TCP, manyRules(MaxMatchRules+1)...))
	if len(fes) != 1 || !hasError(fes, "spec.match", "has 65 rules; a service holds at most 64: merge rules or use pins") {
		t.Fatalf("Validate = %v; want one error about the rule count", fes)
	}
}

func TestMatchDuplicates(t *testing.T) {
	fes := matchErrors(t, withRules(AppHTTP, TCP,
		header("X-Canary", "v2"),
		sni("Beta.Example.com"),
		header("x-canary", "v2"),
		sni("beta.example.com."),
		header("x-canary", "v3"),
	))
	if len(fes) != 2 ||
		!hasError(fes, "spec.match[2]", "repeats the condition of spec.match[0]; the first match wins, so this rule never applies: remove it") ||
		!hasError(fes, "spec.match[3]", "repeats the condition of spec.match[1]") {
		t.Fatalf("Validate = %v; want the two duplicates named", fes)
	}
}

func TestMatchErrorText(t *testing.T) {
	s := withRules(AppNone, TCP, header("X-Canary", "v2"))
	err := s.Validate()
	want := `service "auth": spec.match[0].header: needs app: http or app: grpc (the service has app: none); for TLS services match on sni`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v; want %q", err, want)
	}
}

func TestCloneMatch(t *testing.T) {
	if CloneMatch(nil) != nil {
		t.Fatal("CloneMatch(nil) is not nil")
	}
	rules := []MatchRule{header("a", "b"), metadata("c", "d"), sni("e.f")}
	c := CloneMatch(rules)
	if !reflect.DeepEqual(c, rules) {
		t.Fatalf("CloneMatch = %+v; want %+v", c, rules)
	}
	c[0].Header.Value, c[1].GRPCMetadata.Name, c[2].SNI.Name = "x", "x", "x"
	if rules[0].Header.Value != "b" || rules[1].GRPCMetadata.Name != "c" || rules[2].SNI.Name != "e.f" {
		t.Fatal("the clone shares its conditions with the original")
	}
}
