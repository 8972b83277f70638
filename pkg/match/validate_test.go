package match

import (
	"errors"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

func TestValidateAccepts(t *testing.T) {
	rules := []Rule{
		header("X-Canary", "v2"),
		{Header: &FieldCondition{Name: ":authority", Prefix: "beta."}, Pool: service.Canary},
		{Header: &FieldCondition{Name: "x-debug", Present: true}, Pool: service.Stable},
		{GRPCMetadata: &FieldCondition{Name: "x-canary", Value: "v2"}, Pool: service.Canary},
		{SNI: &SNICondition{Name: "beta.example.com"}, Pool: service.Canary},
		{SNI: &SNICondition{Name: "*.example.com."}, Pool: service.Canary},
		{SNI: &SNICondition{Name: "_svc.internal"}, Pool: service.Canary},
	}
	if errs := Validate("grpc", "tcp", rules); len(errs) != 0 {
		t.Fatalf("Validate: %v", errs)
	}
	sniOnly := []Rule{{SNI: &SNICondition{Name: "beta.example.com"}, Pool: service.Canary}}
	if errs := Validate("", "tcp", sniOnly); len(errs) != 0 {
		t.Fatalf("Validate sni on app none: %v", errs)
	}
	if errs := Validate("none", "udp", nil); len(errs) != 0 {
		t.Fatalf("Validate no rules: %v", errs)
	}
}

func metadata(name, value string) Rule {
	return Rule{GRPCMetadata: &FieldCondition{Name: name, Value: value}, Pool: service.Canary}
}

func sni(name string) Rule {
	return Rule{SNI: &SNICondition{Name: name}, Pool: service.Canary}
}

func TestValidateRejects(t *testing.T) {
	long := strings.Repeat("a", MaxValueBytes+1)
	tests := []struct {
		name     string
		app      string
		protocol string
		rule     Rule
		path     string
		msg      string
	}{
		{"empty header name", "http", "tcp", header("", "v2"), "spec.match[0].header.name", "is empty"},
		{"header name not a token", "http", "tcp", header("X Canary", "v2"), "spec.match[0].header.name", "not a valid header name"},
		{"header name with colon", "http", "tcp", header("X-Canary:", "v2"), "spec.match[0].header.name", "not a valid header name"},
		{"header name too long", "http", "tcp", header(long, "v2"), "spec.match[0].header.name", "at most 128"},
		{"unknown pseudo", "http", "tcp", header(":status", "200"), "spec.match[0].header.name", "not a request pseudo-header"},
		{"uppercase pseudo", "http", "tcp", header(":Path", "/"), "spec.match[0].header.name", "use one of :method"},
		{"header without app", "none", "tcp", header("X-Canary", "v2"), "spec.match[0].header", "needs app: http or app: grpc (the service has app: none)"},
		{"header without app set", "", "tcp", header("X-Canary", "v2"), "spec.match[0].header", "for TLS services match on sni"},
		{"no condition", "http", "tcp", Rule{Pool: service.Canary}, "spec.match[0]", "has no condition"},
		{"two conditions", "http", "tcp", Rule{Header: &FieldCondition{Name: "a", Value: "b"}, SNI: &SNICondition{Name: "a.b"}},
			"spec.match[0]", "has header and sni; a rule has exactly one condition"},
		{"value and prefix", "http", "tcp", Rule{Header: &FieldCondition{Name: "a", Value: "b", Prefix: "c"}},
			"spec.match[0].header", "sets both value and prefix"},
		{"value and present", "http", "tcp", Rule{Header: &FieldCondition{Name: "a", Value: "b", Present: true}},
			"spec.match[0].header", "sets both value and present"},
		{"no value", "http", "tcp", Rule{Header: &FieldCondition{Name: "a"}}, "spec.match[0].header", "needs one of value, prefix or present: true"},
		{"value too long", "http", "tcp", header("a", long), "spec.match[0].header.value", "257 bytes long; at most 256"},
		{"prefix too long", "http", "tcp", Rule{Header: &FieldCondition{Name: "a", Prefix: long}}, "spec.match[0].header.prefix", "use a prefix"},
		{"value with newline", "http", "tcp", header("a", "v\r\nx: y"), "spec.match[0].header.value", "control character"},
		{"value with space", "http", "tcp", header("a", "v2 "), "spec.match[0].header.value", "starts or ends with a space"},
		{"bad pool", "http", "tcp", Rule{Header: &FieldCondition{Name: "a", Value: "b"}, Pool: 7}, "spec.match[0].pool", "pool(7) is not a pool: use stable or canary"},
		{"metadata on http", "http", "tcp", metadata("x-canary", "v2"), "spec.match[0].grpcMetadata", "needs app: grpc (the service has app: http)"},
		{"metadata uppercase", "grpc", "tcp", metadata("X-Canary", "v2"), "spec.match[0].grpcMetadata.name", `uppercase letters; gRPC metadata keys are lowercase: use "x-canary"`},
		{"metadata bad char", "grpc", "tcp", metadata("x canary", "v2"), "spec.match[0].grpcMetadata.name", "not a valid gRPC metadata key"},
		{"metadata binary", "grpc", "tcp", metadata("x-trace-bin", "AAE="), "spec.match[0].grpcMetadata.name", "binary key"},
		{"metadata pseudo", "grpc", "tcp", metadata(":path", "/a"), "spec.match[0].grpcMetadata.name", "use a header rule"},
		{"metadata empty", "grpc", "tcp", metadata("", "v2"), "spec.match[0].grpcMetadata.name", "is empty"},
		{"sni on udp", "none", "udp", sni("a.example.com"), "spec.match[0].sni", "needs protocol: tcp (the service has protocol: udp)"},
		{"header on udp", "http", "udp", header("a", "b"), "spec.match[0].header", "needs protocol: tcp"},
		{"sni empty", "", "tcp", sni(""), "spec.match[0].sni.name", "is empty"},
		{"sni ip", "", "tcp", sni("10.0.0.1"), "spec.match[0].sni.name", "is an IP address"},
		{"sni ipv6", "", "tcp", sni("[2001:db8::1]"), "spec.match[0].sni.name", "is an IP address"},
		{"sni inner star", "", "tcp", sni("a.*.example.com"), "spec.match[0].sni.name", "misplaced *"},
		{"sni partial star", "", "tcp", sni("beta*.example.com"), "spec.match[0].sni.name", "misplaced *"},
		{"sni tld wildcard", "", "tcp", sni("*.com"), "spec.match[0].sni.name", "top-level domain"},
		{"sni bad char", "", "tcp", sni("beta example.com"), "spec.match[0].sni.name", "not a host name"},
		{"sni empty label", "", "tcp", sni("beta..example.com"), "spec.match[0].sni.name", "not a host name"},
		{"sni hyphen label", "", "tcp", sni("-beta.example.com"), "spec.match[0].sni.name", "not a host name"},
		{"sni too long", "", "tcp", sni(strings.Repeat("abc.", 64) + "com"), "spec.match[0].sni.name", "at most 253"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := Validate(tt.app, tt.protocol, []Rule{tt.rule})
			if !hasError(errs, tt.path, tt.msg) {
				t.Errorf("Validate = %v; want an error at %s saying %q", errs, tt.path, tt.msg)
			}
		})
	}
}

func hasError(errs []error, path, msg string) bool {
	for _, err := range errs {
		var fe *service.FieldError
		if errors.As(err, &fe) && fe.Path == path && strings.Contains(fe.Msg, msg) {
			return true
		}
	}
	return false
}

func TestValidateTooManyRules(t *testing.T) {
	rules := make([]Rule, MaxRules+1)
	for i := range rules {
		rules[i] = header("x-n", strings.Repeat("v", i+1))
	}
	errs := Validate("http", "tcp", rules)
	if len(errs) != 1 || !hasError(errs, "spec.match", "has 65 rules; a service holds at most 64") {
		t.Fatalf("Validate = %v; want one error about the rule count", errs)
	}
}

func TestValidateDuplicates(t *testing.T) {
	rules := []Rule{
		header("X-Canary", "v2"),
		sni("Beta.Example.com"),
		header("x-canary", "v2"),
		sni("beta.example.com."),
		header("x-canary", "v3"),
	}
	errs := Validate("http", "tcp", rules)
	if len(errs) != 2 {
		t.Fatalf("Validate = %v; want 2 errors", errs)
	}
	if !hasError(errs, "spec.match[2]", "repeats the condition of spec.match[0]") ||
		!hasError(errs, "spec.match[3]", "repeats the condition of spec.match[1]") {
		t.Fatalf("Validate = %v; want duplicates named", errs)
	}
}

func TestValidateErrorText(t *testing.T) {
	errs := Validate("none", "tcp", []Rule{header("X-Canary", "v2")})
	if len(errs) != 1 {
		t.Fatalf("Validate = %v; want 1 error", errs)
	}
	want := "spec.match[0].header: needs app: http or app: grpc (the service has app: none); for TLS services match on sni"
	if got := errs[0].Error(); got != want {
		t.Fatalf("error = %q; want %q", got, want)
	}
}
