package manifest

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/strictyaml"
)

// base returns a valid service as ParseFile returns it for a document that
// gives only name, vip, port, protocol and the stable backends.
func base(name, vip string, stable ...string) service.Service {
	return service.Service{
		Name:     name,
		Tenant:   service.DefaultTenant,
		VIP:      netip.MustParseAddr(vip),
		Port:     80,
		Protocol: service.TCP,
		Key:      service.KeyFlow,
		App:      service.AppNone,
		Timeout:  service.DefaultTimeout,
		Stable:   backends(stable...),
	}
}

// backends returns backends of weight 1.
func backends(addrs ...string) []service.Backend {
	var out []service.Backend
	for _, a := range addrs {
		out = append(out, service.Backend{Addr: netip.MustParseAddrPort(a), Weight: 1})
	}
	return out
}

func pin(prefix string, pool service.Pool) service.Pin {
	return service.Pin{Prefix: netip.MustParsePrefix(prefix), Pool: pool}
}

// checkErrors checks that err is one error per entry of want, in order, each
// an *Error containing that entry.
func checkErrors(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want %q", want)
	}
	got := strictyaml.Leaves(err)
	for i, e := range got {
		var me *Error
		if !errors.As(e, &me) {
			t.Errorf("error %d (%v) is a %T, not an *Error", i, e, e)
		}
		if i < len(want) && !strings.Contains(e.Error(), want[i]) {
			t.Errorf("error %d:\n  %v\nwant it to contain\n  %s", i, e, want[i])
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d errors, want %d:\n%v", len(got), len(want), err)
	}
}

// other turns doc into another service at the same frontend, with backends
// of its own.
func other(doc string) string {
	return strings.NewReplacer("name: auth", "name: auth-2", "10.1.0.11", "10.1.0.21", "10.2.0.11", "10.2.0.21").Replace(doc)
}

// doc is a valid Service document; tests change it with strings.Replace.
const doc = `apiVersion: graylane.io/v1
kind: Service
metadata:
  name: auth
spec:
  vip: 10.0.0.10
  port: 80
  protocol: tcp
  stable:
    backends: ["10.1.0.11:8080"]
  canary:
    backends: ["10.2.0.11:8080"]
    weight: 5%
`

func TestCanaryWeight(t *testing.T) {
	tests := []struct {
		weight string
		want   service.Weight
		err    string
	}{
		{weight: "0", want: 0},
		{weight: "0%", want: 0},
		{weight: "0.01%", want: 1},
		{weight: "0.1", want: 10},
		{weight: "0.10", want: 10},
		{weight: ".5", want: 50},
		{weight: "5", want: 500},
		{weight: `"5"`, want: 500},
		{weight: "'5'", want: 500},
		{weight: "5%", want: 500},
		{weight: `"5%"`, want: 500},
		{weight: "5 %", want: 500},
		{weight: "0.25%", want: 25},
		{weight: "0.25", want: 25},
		{weight: "99.99%", want: 9999},
		{weight: "100%", want: 10000},
		{weight: "100", want: 10000},
		{weight: "~", want: 0},
		{weight: "", want: 0},
		{weight: "101%", err: `weight "101%" is above 100%`},
		{weight: "100.01", err: `weight "100.01" is above 100%`},
		{weight: "1000", err: `weight "1000" is above 100%`},
		{weight: "0.001%", err: `weight "0.001%" has more than two decimals: the split has 0.01% steps`},
		{weight: "0.125", err: `weight "0.125" has more than two decimals`},
		{weight: "-5%", err: `"-5%" is not a weight: use a percentage such as 5, 5% or 0.25%`},
		{weight: "1e1", err: `"1e1" is not a weight`},
		{weight: "five", err: `"five" is not a weight`},
		{weight: `""`, err: `"" is not a weight`},
		{weight: "[5]", err: "must be a single value, not a list"},
		{weight: "{v: 5}", err: "must be a single value, not a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.weight, func(t *testing.T) {
			in := strings.Replace(doc, "weight: 5%", "weight: "+tt.weight, 1)
			svcs, err := ParseFile("w.yaml", []byte(in))
			if tt.err != "" {
				checkErrors(t, err, []string{"w.yaml:13: spec.canary.weight: " + tt.err})
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := svcs[0].CanaryWeight; got != tt.want {
				t.Errorf("weight %s read as %d basis points, want %d", tt.weight, got, tt.want)
			}
		})
	}
}

func TestParseFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		in      string // the document, or a change "old => new" to doc
		want    []string
		wantAny bool // only check that the first error contains want[0]
	}{
		{name: "unknown top-level field", in: "kind: Service => kind: Service\nstatus: {}",
			want: []string{"x.yaml:3: status: unknown field"}},
		{name: "unknown field in pin", in: "weight: 5% => weight: 5%\n  pins:\n    - {prefix: 10.9.0.0/16, pol: canary}",
			want: []string{"x.yaml:15: spec.pins[0].pol: unknown field", "x.yaml:15: spec.pins[0].pool: is required"}},
		{name: "unknown field in backend", in: `["10.1.0.11:8080"] => [{address: "10.1.0.11:8080", wieght: 2}]`,
			want: []string{"x.yaml:10: spec.stable.backends[0].wieght: unknown field"}},
		{name: "unknown field in metadata", in: "name: auth => name: auth\n  labels: {a: b}",
			want: []string{"x.yaml:5: metadata.labels: unknown field"}},
		{name: "field twice", in: "port: 80 => port: 80\n  port: 81",
			want: []string{"x.yaml:8: spec.port: is given twice (first on line 7)"}},
		{name: "merge key", in: "vip: 10.0.0.10 => vip: 10.0.0.10\n  <<: {port: 80}",
			want: []string{"x.yaml:7: spec.<<: merge keys are not supported"}},
		{name: "spec a list", in: "spec:\n => spec: []\nold:\n",
			want: []string{"spec: must be a mapping of fields, not a list"}, wantAny: true},
		{name: "backends a string", in: `backends: ["10.1.0.11:8080"] => backends: "10.1.0.11:8080"`,
			want: []string{`x.yaml:10: spec.stable.backends: must be a list, not the single value "10.1.0.11:8080"`}},
		{name: "backend a list", in: `["10.1.0.11:8080"] => [["10.1.0.11:8080"]]`,
			want: []string{`x.yaml:10: spec.stable.backends[0]: must be "address:port" or {address: "address:port", weight: N}, not a list`}},
		{name: "empty backend", in: `["10.1.0.11:8080"] => [~, "10.1.0.12"]`,
			want: []string{"x.yaml:10: spec.stable.backends[0]: is empty", `x.yaml:10: spec.stable.backends[1]: "10.1.0.12" is not an address:port`}},
		{name: "empty pin", in: "weight: 5% => weight: 5%\n  pins: [~, {prefix: 10.9.0.0/16, pool: x}]",
			want: []string{"x.yaml:14: spec.pins[0].prefix: is required", "x.yaml:14: spec.pins[0].pool: is required", `x.yaml:14: spec.pins[1].pool: "x" is not a pool`}},
		{name: "key not a field name", in: "kind: Service => kind: Service\n? [a]\n: b",
			want: []string{"x.yaml:3: document: has a key that is not a field name"}},
		{name: "backend object without address", in: `["10.1.0.11:8080"] => [{weight: 2}]`,
			want: []string{"x.yaml:10: spec.stable.backends[0].address: is required"}},
		{name: "backend weight 0", in: `["10.1.0.11:8080"] => [{address: "10.1.0.11:8080", weight: 0}]`,
			want: []string{`x.yaml:10: spec.stable.backends[0].weight: "0" is not a backend weight`}},
		{name: "backend weight not a number", in: `["10.1.0.11:8080"] => [{address: "10.1.0.11:8080", weight: 1.5}]`,
			want: []string{`spec.stable.backends[0].weight: "1.5" is not a backend weight`}},
		{name: "backend without port", in: `"10.1.0.11:8080"] => "10.1.0.11"]`,
			want: []string{`x.yaml:10: spec.stable.backends[0]: "10.1.0.11" is not an address:port`}},
		{name: "backend IPv6 without brackets", in: `"10.1.0.11:8080"] => "2001:db8::1:8080"]`,
			want: []string{`spec.stable.backends[0]: "2001:db8::1:8080" is not an address:port`}},
		{name: "backend of the other family", in: `"10.1.0.11:8080"] => "[2001:db8::11]:8080"]`,
			want: []string{`x.yaml:10: service "auth": spec.stable.backends[0]: 2001:db8::11 is not of the VIP's address family`}},
		{name: "backend twice", in: `["10.1.0.11:8080"] => ["10.1.0.11:8080", "10.1.0.11:8080"]`,
			want: []string{`service "auth": spec.stable.backends[1]: 10.1.0.11:8080 is listed twice`}},
		{name: "port float", in: "port: 80 => port: 80.5",
			want: []string{`x.yaml:7: spec.port: "80.5" is not a port`}},
		{name: "port list", in: "port: 80 => port: [80]",
			want: []string{"x.yaml:7: spec.port: must be a single value, not a list"}},
		{name: "port missing", in: "  port: 80\n => ",
			want: []string{`x.yaml:5: service "auth": spec.port: is required`}},
		{name: "vip missing", in: "  vip: 10.0.0.10\n => ",
			want: []string{`x.yaml:5: service "auth": spec.vip: is required`}},
		{name: "vip bad", in: "vip: 10.0.0.10 => vip: 10.0.0",
			want: []string{`x.yaml:6: spec.vip: "10.0.0" is not an IP address`}},
		{name: "vip with prefix", in: "vip: 10.0.0.10 => vip: 10.0.0.10/32",
			want: []string{`spec.vip: "10.0.0.10/32" is not an IP address`}},
		{name: "protocol missing", in: "  protocol: tcp\n => ",
			want: []string{"x.yaml:5: spec.protocol: is required: use tcp or udp"}},
		{name: "protocol unknown", in: "protocol: tcp => protocol: TCP",
			want: []string{`x.yaml:8: spec.protocol: "TCP" is not a protocol: use tcp or udp`}},
		{name: "key unknown", in: "protocol: tcp => protocol: tcp\n  key: source",
			want: []string{`x.yaml:9: spec.key: "source" is not a key`}},
		{name: "app unknown", in: "protocol: tcp => protocol: tcp\n  app: thrift",
			want: []string{`x.yaml:9: service "auth": spec.app: "thrift" is not supported: use none, http or grpc`}},
		{name: "timeout without unit", in: "protocol: tcp => protocol: tcp\n  timeout: 30",
			want: []string{`x.yaml:9: spec.timeout: "30" is not a duration`}},
		{name: "latency threshold null", in: "protocol: tcp => protocol: tcp\n  latencyThresholds: [~, 800ms]",
			want: []string{"x.yaml:9: spec.latencyThresholds[0]: is empty: give a duration such as 800ms"}},
		{name: "timeout negative", in: "protocol: tcp => protocol: tcp\n  timeout: -1s",
			want: []string{`x.yaml:9: service "auth": spec.timeout: -1s must be at least 1ms`}},
		{name: "idle timeout without unit", in: "protocol: tcp => protocol: tcp\n  idleTimeout: 30",
			want: []string{`x.yaml:9: spec.idleTimeout: "30" is not a duration: use one such as 120s or 1h, or never`}},
		{name: "idle timeout too short", in: "protocol: tcp => protocol: tcp\n  idleTimeout: 500ms",
			want: []string{`x.yaml:9: service "auth": spec.idleTimeout: 500ms must be between 1s and 1h0m0s, or never`}},
		{name: "idle timeout too long", in: "protocol: tcp => protocol: tcp\n  idleTimeout: 200h",
			want: []string{`spec.idleTimeout: 200h0m0s must be between 1s and 1h0m0s, or never`}},
		{name: "tenant empty", in: "name: auth => name: auth\n  tenant: ''",
			want: []string{"x.yaml:5: metadata.tenant: is empty"}},
		{name: "name missing", in: "  name: auth\n => ",
			want: []string{`x.yaml:3: metadata.name: "" must be 1 to 63 characters`}},
		{name: "pin pool unknown", in: "weight: 5% => weight: 5%\n  pins: [{prefix: 10.9.0.0/16, pool: beta}]",
			want: []string{`x.yaml:14: spec.pins[0].pool: "beta" is not a pool`}},
		{name: "pin prefix missing", in: "weight: 5% => weight: 5%\n  pins: [{pool: canary}]",
			want: []string{"x.yaml:14: spec.pins[0].prefix: is required"}},
		{name: "pin host bits", in: "weight: 5% => weight: 5%\n  pins: [{prefix: 10.9.0.1/16, pool: canary}]",
			want: []string{`x.yaml:14: service "auth": spec.pins[0].prefix: 10.9.0.1/16 has host bits set; did you mean 10.9.0.0/16?`}},
		{name: "pin without length", in: "weight: 5% => weight: 5%\n  pins: [{prefix: 10.9.0.1, pool: canary}]",
			want: []string{`x.yaml:14: spec.pins[0].prefix: "10.9.0.1" is not a CIDR prefix`}},
		{name: "mirror without percent", in: "weight: 5% => weight: 5%\n  mirror: {to: mirror0}",
			want: []string{"x.yaml:14: spec.mirror.percent: is required"}},
		{name: "mirror without target", in: "weight: 5% => weight: 5%\n  mirror: {percent: 1%}",
			want: []string{`x.yaml:14: service "auth": spec.mirror.to: is required`}},
		{name: "mirror percent bad", in: "weight: 5% => weight: 5%\n  mirror: {percent: 200%, to: mirror0}",
			want: []string{`x.yaml:14: spec.mirror.percent: weight "200%" is above 100%`}},
		{name: "mirror snaplen too short", in: "weight: 5% => weight: 5%\n  mirror: {percent: 1%, to: capture, snaplen: 63}",
			want: []string{`x.yaml:14: service "auth": spec.mirror.snaplen: 63 is outside 64..65535 bytes`}},
		{name: "mirror snaplen too long", in: "weight: 5% => weight: 5%\n  mirror: {percent: 1%, to: capture, snaplen: 65536}",
			want: []string{`x.yaml:14: service "auth": spec.mirror.snaplen: 65536 is outside 64..65535 bytes`}},
		{name: "mirror snaplen negative", in: "weight: 5% => weight: 5%\n  mirror: {percent: 1%, to: capture, snaplen: -1}",
			want: []string{`x.yaml:14: spec.mirror.snaplen: "-1" is not a length: use a whole number of bytes from 64 to 65535`}},
		{name: "mirror snaplen with a unit", in: "weight: 5% => weight: 5%\n  mirror: {percent: 1%, to: capture, snaplen: 256B}",
			want: []string{`x.yaml:14: spec.mirror.snaplen: "256B" is not a length`}},
		{name: "mirror snaplen a list", in: "weight: 5% => weight: 5%\n  mirror: {percent: 1%, to: capture, snaplen: [256]}",
			want: []string{"x.yaml:14: spec.mirror.snaplen: must be a single value, not a list"}},
		{name: "stable empty", in: `backends: ["10.1.0.11:8080"] => backends: []`,
			want: []string{`x.yaml:10: service "auth": spec.stable.backends: is empty but 95% of new flows would go to it`}},
		{name: "apiVersion missing", in: "apiVersion: graylane.io/v1\n => ",
			want: []string{"x.yaml:1: apiVersion: is required: use graylane.io/v1"}},
		{name: "apiVersion a list", in: "apiVersion: graylane.io/v1 => apiVersion: [graylane.io/v1]",
			want: []string{"x.yaml:1: apiVersion: must be a single value, not a list"}},
		{name: "kind lower case", in: "kind: Service => kind: service",
			want: []string{`x.yaml:2: kind: "service" is not a kind of Graylane manifest: use Service`}},
		{name: "document a list", in: "- a\n- b\n",
			want: []string{"x.yaml:1: a manifest document is a mapping that starts with apiVersion and kind"}},
		{name: "document a scalar", in: "hello\n",
			want: []string{"x.yaml:1: a manifest document is a mapping"}},
		{name: "missing bracket", in: `backends: ["10.1.0.11:8080"] => backends: ["10.1.0.11:8080"`,
			want: []string{"x.yaml:10: not valid YAML: did not find expected ',' or ']'"}},
		{name: "bad indentation", in: "  protocol: tcp\n =>   protocol: tcp\n key: flow\n",
			want: []string{"x.yaml:9: not valid YAML: did not find expected key"}},
		{name: "tab indentation", in: "apiVersion: graylane.io/v1\n\tkind: Service\n",
			want: []string{"x.yaml:2: not valid YAML: found a tab character that violates indentation"}},
		{name: "alias", in: "weight: 5% => weight: &w 5%\n  mirror: {percent: *w, to: mirror0}\n  pins: [&p {prefix: 10.9.0.0/16, pool: canary}, *p]",
			want: []string{`x.yaml:15: service "auth": spec.pins[1].prefix: 10.9.0.0/16 is pinned twice (also at index 0)`}},
		{name: "alias cycle", in: "weight: 5% => weight: 5%\n  pins: &p [*p]",
			want: []string{"x.yaml:14: spec.pins[0]: must be a mapping of fields, not a list"}},
		{name: "billion laughs", in: laughs(),
			want: []string{"x.yaml:21: laugh: unknown field"}, wantAny: true},
		{name: "duplicate name", in: doc + "---\n" + strings.Replace(doc, "10.0.0.10", "10.0.0.11", 1),
			want: []string{`x.yaml:18: service "auth": metadata.name: is used by two services (documents 1 and 2): at x.yaml:1, x.yaml:15`}},
		{name: "duplicate frontend", in: doc + "---\n" + other(doc),
			want: []string{`x.yaml:20: service "auth-2": spec.vip: 10.0.0.10:80/tcp is already the frontend of service "auth"`}},
		{name: "duplicate frontend IPv4-mapped", in: doc + "---\n" + strings.Replace(other(doc), "vip: 10.0.0.10", "vip: ::ffff:10.0.0.10", 1),
			want: []string{`service "auth-2": spec.vip: 10.0.0.10:80/tcp is already the frontend of service "auth"`}},
		{name: "shared backend", in: doc + "---\n" + strings.Replace(other(doc), "10.0.0.10", "10.0.0.11", 1) + "---\n" +
			strings.NewReplacer("name: auth", "name: auth-3", "10.0.0.10", "10.0.0.12", "10.2.0.11", "10.2.0.31").Replace(doc),
			want: []string{`x.yaml:38: service "auth-3": spec.stable.backends[0]: 10.1.0.11:8080/tcp is also a backend of service "auth"`}},
		{name: "bad backends in two services", in: strings.Replace(doc, `"10.1.0.11:8080"`, `"10.1.0.11"`, 1) + "---\n" +
			strings.NewReplacer("name: auth", "name: auth-2", "10.0.0.10", "10.0.0.11", `"10.1.0.11:8080"`, `"10.1.0.12"`, "10.2.0.11", "10.2.0.21").Replace(doc),
			want: []string{`x.yaml:10: spec.stable.backends[0]: "10.1.0.11" is not an address:port`, `x.yaml:24: spec.stable.backends[0]: "10.1.0.12" is not an address:port`}},
		{name: "good and bad documents", in: doc + "---\n" + strings.Replace(other(doc), "port: 80", "port: 0", 1),
			want: []string{`x.yaml:21: spec.port: "0" is not a port`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if old, new, ok := strings.Cut(tt.in, " => "); ok {
				if !strings.Contains(doc, old) {
					t.Fatalf("doc does not contain %q", old)
				}
				in = strings.Replace(doc, old, new, 1)
			}
			_, err := ParseFile("x.yaml", []byte(in))
			if tt.wantAny {
				if err == nil || !strings.Contains(err.Error(), tt.want[0]) {
					t.Fatalf("error %v, want one containing %q", err, tt.want[0])
				}
				return
			}
			checkErrors(t, err, tt.want)
		})
	}
}

// laughs returns a document whose aliases expand to 10^6 values.
func laughs() string {
	var b strings.Builder
	b.WriteString(strings.Replace(doc, "weight: 5%\n", "weight: 5%\n  pins: &l0 [a, a, a, a, a, a, a, a, a, a]\n", 1))
	b.WriteString("x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i < 6; i++ {
		fmt.Fprintf(&b, "x%d: &x%d [*x%d, *x%d, *x%d, *x%d, *x%d, *x%d, *x%d, *x%d, *x%d, *x%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("laugh: *x5\n")
	return b.String()
}

func TestErrorsAs(t *testing.T) {
	in := strings.Replace(doc, "weight: 5%", "weight: 101%", 1)
	_, err := ParseFile("x.yaml", []byte(in))
	var me *Error
	if !errors.As(err, &me) || me.File != "x.yaml" || me.Line != 13 {
		t.Fatalf("errors.As(*Error) = %+v, want file x.yaml, line 13", me)
	}
	var fe *service.FieldError
	if !errors.As(err, &fe) || fe.Path != "spec.canary.weight" {
		t.Fatalf("errors.As(*service.FieldError) = %+v, want path spec.canary.weight", fe)
	}
}

func TestEmptyDocuments(t *testing.T) {
	for _, in := range []string{"", "---\n", "---\n---\n", "# nothing\n", "~\n", "---\n# a\n---\n"} {
		svcs, err := ParseFile("x.yaml", []byte(in))
		if err != nil || len(svcs) != 0 {
			t.Errorf("ParseFile(%q) = %v, %v; want no services, no error", in, svcs, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	svcs, err := Load(goodDir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := Marshal(svcs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseFile("marshalled.yaml", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !reflect.DeepEqual(got, svcs) {
		t.Errorf("read back\n%+v\nwant\n%+v\nfrom\n%s", got, svcs, data)
	}
	again, err := Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(data) {
		t.Errorf("Marshal is not stable:\n%s\nthen\n%s", data, again)
	}
}

func TestRoundTripAwkwardValues(t *testing.T) {
	// Strings YAML would read as null, booleans or numbers, and addresses
	// that need quoting.
	odd := base("null", "::ffff:10.0.0.10", "[::ffff:10.1.0.11]:8080")
	odd.Tenant = "true"
	odd.Mirror = &service.Mirror{Percent: 1, To: "~"}
	num := base("1e3", "2001:db8::10", "[2001:db8::11]:8080")
	num.Tenant = "0x10"
	num.Timeout = 90 * time.Minute
	num.Mirror = &service.Mirror{Percent: 10000, To: "null", Snaplen: service.MinSnaplen}
	num.Canary = backends("[2001:db8::21]:8080")
	num.Pins = []service.Pin{pin("::/0", service.Canary)}
	svcs := []service.Service{odd, num}
	data, err := Marshal(svcs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseFile("odd.yaml", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !reflect.DeepEqual(got, svcs) {
		t.Errorf("read back\n%+v\nwant\n%+v\nfrom\n%s", got, svcs, data)
	}
}

func TestMarshalEmpty(t *testing.T) {
	data, err := Marshal(nil)
	if err != nil || len(data) != 0 {
		t.Fatalf("Marshal(nil) = %q, %v; want nothing", data, err)
	}
}

func TestMarshalFillsDefaults(t *testing.T) {
	s := base("auth", "10.0.0.10", "10.1.0.11:8080")
	s.Tenant, s.App, s.Stable[0].Weight = "", "", 0
	data, err := Marshal([]service.Service{s})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseFile("m.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	want := base("auth", "10.0.0.10", "10.1.0.11:8080")
	if !reflect.DeepEqual(got, []service.Service{want}) {
		t.Errorf("read back %+v, want %+v", got, want)
	}
}

func TestMarshalRefusesInvalid(t *testing.T) {
	s := base("auth", "10.0.0.10", "10.1.0.11:8080")
	s.Port = 0
	if _, err := Marshal([]service.Service{s}); err == nil || !strings.Contains(err.Error(), "spec.port") {
		t.Errorf("Marshal(port 0) error %v, want one naming spec.port", err)
	}
}

// TestIdleTimeout: spec.idleTimeout reads a duration, "never" or 0 (no
// idle timeout), and nothing for the protocol's default; each writes back
// as it reads.
func TestIdleTimeout(t *testing.T) {
	for _, c := range []struct {
		in        string
		want      time.Duration
		effective time.Duration
	}{
		{"", 0, service.DefaultIdleTimeoutTCP},
		{"  idleTimeout: 30s\n", 30 * time.Second, 30 * time.Second},
		{"  idleTimeout: never\n", service.NoIdleTimeout, 0},
		{"  idleTimeout: 0\n", service.NoIdleTimeout, 0},
	} {
		doc := "apiVersion: graylane.io/v1\nkind: Service\nmetadata: {name: auth}\nspec:\n  vip: 10.0.0.10\n  port: 80\n  protocol: tcp\n" + c.in + "  stable: {backends: [\"10.1.0.11:8080\"]}\n"
		got, err := ParseFile("x.yaml", []byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", c.in, err)
		}
		if got[0].IdleTimeout != c.want || got[0].EffectiveIdleTimeout() != c.effective {
			t.Errorf("%q: idle timeout %v (effective %v), want %v (%v)", c.in, got[0].IdleTimeout, got[0].EffectiveIdleTimeout(), c.want, c.effective)
		}
		data, err := Marshal(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseFile("y.yaml", data)
		if err != nil || back[0].IdleTimeout != got[0].IdleTimeout {
			t.Errorf("%q: written as\n%s\nread back %v (%v)", c.in, data, back[0].IdleTimeout, err)
		}
	}
	udp := service.Service{Protocol: service.UDP}
	if udp.EffectiveIdleTimeout() != service.DefaultIdleTimeoutUDP {
		t.Errorf("a UDP service's default idle timeout: %v", udp.EffectiveIdleTimeout())
	}
}
