package manifest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// withMatch returns doc with head in place of "protocol: tcp" (two lines:
// the protocol and the app, lines 8 and 9) and spec.match written as
// rules (from line 16 on).
func withMatch(head, rules string) string {
	if head == "" {
		head = "protocol: tcp\n  app: http"
	}
	in := strings.Replace(doc, "protocol: tcp", head, 1)
	return strings.Replace(in, "weight: 5%\n", "weight: 5%\n  match:\n"+rules, 1)
}

// everyRule has a rule of every form, in both YAML styles.
const everyRule = `    - header: {name: X-Canary, value: v2}
      pool: canary
    - header: {name: x-imsi, prefix: "460"}
      pool: canary
    - {header: {name: X-Debug, present: true}, pool: stable}
    - header:
        name: ":path"
        prefix: /v2/
      pool: canary
    - grpcMetadata: {name: x-tenant, value: beta}
      pool: canary
    - sni: {name: beta.example.com}
      pool: canary
    - sni: {name: "*.lab.example.com."}
      pool: stable
`

func TestMatchEveryRule(t *testing.T) {
	svcs, err := ParseFile("m.yaml", []byte(withMatch("protocol: tcp\n  app: grpc", everyRule)))
	if err != nil {
		t.Fatal(err)
	}
	want := []service.MatchRule{
		{Header: &service.FieldMatch{Name: "X-Canary", Value: "v2"}, Pool: service.Canary},
		{Header: &service.FieldMatch{Name: "x-imsi", Prefix: "460"}, Pool: service.Canary},
		{Header: &service.FieldMatch{Name: "X-Debug", Present: true}, Pool: service.Stable},
		{Header: &service.FieldMatch{Name: ":path", Prefix: "/v2/"}, Pool: service.Canary},
		{GRPCMetadata: &service.FieldMatch{Name: "x-tenant", Value: "beta"}, Pool: service.Canary},
		{SNI: &service.SNIMatch{Name: "beta.example.com"}, Pool: service.Canary},
		{SNI: &service.SNIMatch{Name: "*.lab.example.com."}, Pool: service.Stable},
	}
	if len(svcs) != 1 || svcs[0].App != service.AppGRPC || !reflect.DeepEqual(svcs[0].Match, want) {
		t.Fatalf("read %+v\nwant app grpc and rules %+v", svcs, want)
	}
	data := roundTrip(t, Set{Services: svcs})
	for _, line := range []string{
		"  app: grpc\n",
		"  match:\n    - header: {name: X-Canary, value: v2}\n      pool: canary\n",
		`    - header: {name: x-imsi, prefix: "460"}` + "\n",
		"    - header: {name: X-Debug, present: true}\n      pool: stable\n",
		`    - header: {name: ':path', prefix: /v2/}` + "\n",
		"    - grpcMetadata: {name: x-tenant, value: beta}\n",
		"    - sni: {name: beta.example.com}\n",
		`    - sni: {name: '*.lab.example.com.'}` + "\n      pool: stable\n",
	} {
		if !strings.Contains(string(data), line) {
			t.Errorf("MarshalAll wrote\n%s\nwithout\n%s", data, line)
		}
	}
}

func TestMatchRoundTripAwkwardValues(t *testing.T) {
	// Values YAML would read as other types, or that flow style must
	// quote.
	s := base("auth", "10.0.0.10", "10.1.0.11:8080")
	s.App = service.AppHTTP
	s.Canary = backends("10.2.0.11:8080")
	for _, v := range []string{
		"v1, v2", "{x}", "[x]", "null", "~", "true", "no", "460", "0x10", "1e3", "#x", "x #y", "a: b", "- x",
		"*x", "&x", "!x", "%x", "@x", "`x", "'q'", `"q"`, "?", ":", "a\tb", "é", "---", "...",
	} {
		s.Match = append(s.Match, service.MatchRule{Header: &service.FieldMatch{Name: "x-v", Value: v}, Pool: service.Canary})
		s.Match = append(s.Match, service.MatchRule{Header: &service.FieldMatch{Name: "x-p", Prefix: v}, Pool: service.Stable})
	}
	roundTrip(t, Set{Services: []service.Service{s}})
}

func TestMatchAbsent(t *testing.T) {
	for _, in := range []string{doc, withMatch("", "    []\n"), strings.Replace(doc, "weight: 5%\n", "weight: 5%\n  match: ~\n", 1)} {
		svcs, err := ParseFile("m.yaml", []byte(in))
		if err != nil {
			t.Fatal(err)
		}
		if svcs[0].Match != nil {
			t.Errorf("rules %+v from\n%s", svcs[0].Match, in)
		}
	}
}

func TestMatchErrors(t *testing.T) {
	tests := []struct {
		name  string
		head  string // in place of protocol: tcp; default app http
		rules string
		want  []string
	}{
		{name: "unknown pool", rules: "    - {header: {name: X-Canary, value: v2}, pool: beta}\n",
			want: []string{`x.yaml:16: spec.match[0].pool: "beta" is not a pool: use stable or canary`}},
		{name: "no pool", rules: "    - header: {name: X-Canary, value: v2}\n",
			want: []string{"x.yaml:16: spec.match[0].pool: is required: stable or canary, where matching connections go"}},
		{name: "no condition", rules: "    - pool: canary\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0]: has no condition: set one of header, grpcMetadata or sni`}},
		{name: "empty rule", rules: "    - ~\n    - {}\n",
			want: []string{"x.yaml:16: spec.match[0]: is empty: give a condition and a pool, such as {header: {name: X-Canary, value: v2}, pool: canary}",
				"x.yaml:17: spec.match[1]: is empty"}},
		{name: "two conditions", rules: "    - {header: {name: a, value: b}, sni: {name: a.example.com}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0]: has header and sni; a rule has exactly one condition: split it into one rule each`}},
		{name: "value and prefix", rules: "    - {header: {name: a, value: b, prefix: c}, pool: canary}\n",
			want: []string{"x.yaml:16: spec.match[0].header: sets both value and prefix; set only one"}},
		{name: "prefix and present", rules: "    - pool: canary\n      header:\n        name: a\n        prefix: b\n        present: true\n",
			want: []string{"x.yaml:17: spec.match[0].header: sets both prefix and present; set only one"}},
		{name: "present false", rules: "    - {header: {name: a, present: false}, pool: canary}\n",
			want: []string{"x.yaml:16: spec.match[0].header.present: false would match nothing: leave present out and set value or prefix, or write present: true"}},
		{name: "present yes", rules: "    - {grpcMetadata: {name: a, present: yes}, pool: canary}\n", head: "protocol: tcp\n  app: grpc",
			want: []string{`x.yaml:16: spec.match[0].grpcMetadata.present: "yes" is not true: present takes only true`}},
		{name: "value empty", rules: "    - {header: {name: a, value: \"\"}, pool: canary}\n",
			want: []string{"x.yaml:16: spec.match[0].header.value: is empty, and an empty value cannot be matched: use present: true to match any value"}},
		{name: "prefix empty", rules: "    - {header: {name: a, prefix: ''}, pool: canary}\n",
			want: []string{"x.yaml:16: spec.match[0].header.prefix: is empty, and would match any value: use present: true for that"}},
		{name: "no value", rules: "    - {header: {name: a}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].header: needs one of value, prefix or present: true`}},
		{name: "no header name", rules: "    - {header: {value: b}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].header.name: is empty: name the header to match, such as X-Canary`}},
		{name: "value a list", rules: "    - {header: {name: a, value: [b]}, pool: canary}\n",
			want: []string{"x.yaml:16: spec.match[0].header.value: must be a single value, not a list",
				`x.yaml:16: service "auth": spec.match[0].header: needs one of value`}},
		{name: "unknown field in rule", rules: "    - {header: {name: a, value: b}, pool: canary, weight: 5}\n",
			want: []string{"x.yaml:16: spec.match[0].weight: unknown field"}},
		{name: "unknown field in header", rules: "    - pool: canary\n      header:\n        name: a\n        valeu: b\n",
			want: []string{"x.yaml:19: spec.match[0].header.valeu: unknown field", `x.yaml:17: service "auth": spec.match[0].header: needs one of value`}},
		{name: "match a mapping", rules: "    header: {name: a, value: b}\n",
			want: []string{"x.yaml:16: spec.match: must be a list, not a mapping"}},
		{name: "header a string", rules: "    - {header: X-Canary, pool: canary}\n",
			want: []string{`x.yaml:16: spec.match[0].header: must be a mapping of fields, not the single value "X-Canary"`}},
		{name: "header name not a token", rules: "    - pool: canary\n      header:\n        name: X Canary\n        value: v2\n",
			want: []string{`x.yaml:18: service "auth": spec.match[0].header.name: "X Canary" is not a valid header name`}},
		{name: "unknown pseudo-header", rules: "    - {header: {name: \":status\", value: \"200\"}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].header.name: ":status" is not a request pseudo-header`}},
		{name: "metadata on app http", rules: "    - {grpcMetadata: {name: x-canary, value: v2}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].grpcMetadata: needs app: grpc (the service has app: http); for plain HTTP use a header rule`}},
		{name: "metadata uppercase", head: "protocol: tcp\n  app: grpc", rules: "    - {grpcMetadata: {name: X-Canary, value: v2}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].grpcMetadata.name: "X-Canary" has uppercase letters; gRPC metadata keys are lowercase: use "x-canary"`}},
		{name: "header on app none", head: "protocol: tcp\n  app: none", rules: "    - {header: {name: X-Canary, value: v2}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].header: needs app: http or app: grpc (the service has app: none); for TLS services match on sni`}},
		{name: "header without app", head: "protocol: tcp\n  key: flow", rules: "    - {header: {name: X-Canary, value: v2}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].header: needs app: http or app: grpc (the service has app: none)`}},
		{name: "sni on udp", head: "protocol: udp\n  app: none", rules: "    - {sni: {name: beta.example.com}, pool: canary}\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].sni: needs protocol: tcp (the service has protocol: udp); match rules read a TCP stream`}},
		{name: "sni misplaced star", rules: "    - {header: {name: X-Canary, value: v2}, pool: canary}\n    - sni: {name: \"a.*.example.com\"}\n      pool: canary\n",
			want: []string{`x.yaml:17: service "auth": spec.match[1].sni.name: "a.*.example.com" has a misplaced *: a wildcard is only the whole first label, as in *.example.com`}},
		{name: "sni without name", rules: "    - sni: {}\n      pool: canary\n",
			want: []string{`x.yaml:16: service "auth": spec.match[0].sni.name: is empty: name the TLS server name to match`}},
		{name: "repeated rule", rules: "    - {header: {name: X-Canary, value: v2}, pool: canary}\n    - {header: {name: x-canary, value: v2}, pool: stable}\n",
			want: []string{`x.yaml:17: service "auth": spec.match[1]: repeats the condition of spec.match[0]; the first match wins, so this rule never applies: remove it`}},
		{name: "every problem of every rule", rules: "    - {header: {name: a, value: b}, pool: beta}\n    - pool: canary\n    - {sni: {name: '*.com'}, pool: canary}\n",
			want: []string{`x.yaml:16: spec.match[0].pool: "beta" is not a pool`, `x.yaml:17: service "auth": spec.match[1]: has no condition`,
				`x.yaml:18: service "auth": spec.match[2].sni.name: "*.com" would match names under a top-level domain`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svcs, err := ParseFile("x.yaml", []byte(withMatch(tt.head, tt.rules)))
			if svcs != nil {
				t.Errorf("ParseFile returned services %+v with its error", svcs)
			}
			checkErrors(t, err, tt.want)
		})
	}
}

// TestMatchBadRuleFailsFile: one bad rule in one document of a file fails
// the whole file.
func TestMatchBadRuleFailsFile(t *testing.T) {
	good := withMatch("", "    - {header: {name: X-Canary, value: v2}, pool: canary}\n")
	bad := other(withMatch("", "    - {header: {name: X-Canary, value: v2}, pool: canery}\n"))
	set, err := ParseAll("x.yaml", []byte(good+"---\n"+strings.Replace(bad, "10.0.0.10", "10.0.0.11", 1)))
	if err == nil || !strings.Contains(err.Error(), `x.yaml:33: spec.match[0].pool: "canery" is not a pool`) {
		t.Fatalf("error %v; want the bad pool of the second document", err)
	}
	if !reflect.DeepEqual(set, Set{}) {
		t.Fatalf("ParseAll returned %+v with its error", set)
	}
}
