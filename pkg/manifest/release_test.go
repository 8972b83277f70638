package manifest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/strictyaml"
)

var update = flag.Bool("update", false, "rewrite the golden files")

const releasesDir = "../../testdata/releases"

func w(v service.Weight) *service.Weight { return &v }

// relDoc is a CanaryRelease that gives every field, each of the errors
// below changes it (the line numbers in their messages are relDoc's).
const relDoc = `apiVersion: graylane.io/v1
kind: CanaryRelease
metadata:
  name: auth-v2
spec:
  service: auth
  steps:
    - setWeight: 5
      pause: {duration: 5m}
    - setWeight: 15
      verify:
        - tcp: {}
        - http: {path: "/healthz?full=1", expectStatus: 204, expectJSON: {".db.status": UP, ".items[0].ok": "true"}}
          timeout: 3s
          retries: 2
        - exec: [sh, -c, "curl -sf http://10.2.0.11:8080/ | jq -e '.ok'"]
    - setRate: 500
    - pause: {}
    - verify: [{tcp: {}, timeout: 1s}]
    - setWeight: 0.25%
  analysis:
    window: 30s
    minRequests: 0
    breaker:
      open: {p99Above: 800ms, errorRateAtLeast: 3.5%}
      close: {p99AtMost: 600ms, errorRateAtMost: 1.2%, windows: 3}
      coolDown: 90s
  onBreach: pause
`

// relDocWant is relDoc read.
func relDocWant() release.Release {
	return release.Release{Name: "auth-v2", Service: "auth", OnBreach: release.PauseRelease,
		Steps: []release.Step{
			{SetWeight: w(500), Pause: &release.Pause{Duration: 5 * time.Minute}},
			{SetWeight: w(1500), Verify: []release.Gate{
				{TCP: &release.TCPGate{}, Timeout: release.DefaultGateTimeout},
				{HTTP: &release.HTTPGate{Path: "/healthz?full=1", ExpectStatus: 204,
					ExpectJSON: map[string]string{".db.status": "UP", ".items[0].ok": "true"}},
					Timeout: 3 * time.Second, Retries: 2},
				{Exec: []string{"sh", "-c", "curl -sf http://10.2.0.11:8080/ | jq -e '.ok'"}, Timeout: release.DefaultGateTimeout},
			}},
			{SetRate: 500},
			{Pause: &release.Pause{}},
			{Verify: []release.Gate{{TCP: &release.TCPGate{}, Timeout: time.Second}}},
			{SetWeight: w(25)},
		},
		Analysis: release.Analysis{Window: 30 * time.Second, MinRequests: 0, Breaker: release.Breaker{
			OpenP99Above: 800 * time.Millisecond, OpenErrorRate: 0.035,
			CloseP99AtMost: 600 * time.Millisecond, CloseErrorRate: 0.012, CloseWindows: 3,
			CoolDown: 90 * time.Second}},
	}
}

// TestContractRelease: the contract's CanaryRelease reads to the model,
// with its service, and writes back to what reads the same.
func TestContractRelease(t *testing.T) {
	set, err := LoadAll(filepath.Join(releasesDir, "auth-v2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := release.Release{Name: "auth-v2", Service: "auth", OnBreach: release.Rollback,
		Steps: []release.Step{
			{SetWeight: w(500), Pause: &release.Pause{Duration: 300 * time.Second}},
			{SetWeight: w(1500), Verify: []release.Gate{
				{TCP: &release.TCPGate{}, Timeout: release.DefaultGateTimeout},
				{HTTP: &release.HTTPGate{Path: "/healthz?full=1", ExpectStatus: 200, ExpectJSON: map[string]string{".db.status": "UP"}}, Timeout: release.DefaultGateTimeout},
				{Exec: []string{"sh", "-c", `curl -s http://10.2.0.11:8080/healthz?full=1 | jq -e '.db.status == "UP"'`}, Timeout: release.DefaultGateTimeout},
			}},
			{SetRate: 500},
			{SetWeight: w(10000)},
		},
		Analysis: release.Analysis{Window: time.Minute, MinRequests: 100, Breaker: release.Breaker{
			OpenP99Above: 800 * time.Millisecond, OpenErrorRate: 0.035, CloseP99AtMost: 600 * time.Millisecond,
			CloseErrorRate: 0.012, CloseWindows: 2, CoolDown: time.Minute}},
	}
	if len(set.Services) != 1 || len(set.Releases) != 1 || !reflect.DeepEqual(set.Releases[0], want) {
		t.Fatalf("got %d services and releases\n%+v\nwant\n%+v", len(set.Services), set.Releases, want)
	}
	roundTrip(t, set)
}

// TestEveryField: a release that gives every field reads to the model,
// and MarshalAll writes it in the canonical form (the golden file), which
// reads back the same.
func TestEveryField(t *testing.T) {
	set, err := ParseAll("every.yaml", []byte(relDoc))
	if err != nil {
		t.Fatal(err)
	}
	want := relDocWant()
	if len(set.Services) != 0 || len(set.Releases) != 1 || !reflect.DeepEqual(set.Releases[0], want) {
		t.Fatalf("got\n%+v\nwant\n%+v", set, want)
	}
	data := roundTrip(t, set)
	golden := filepath.Join("testdata", "release-every-field.golden.yaml")
	if *update {
		if err := os.WriteFile(golden, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantData, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != string(wantData) {
		t.Errorf("MarshalAll wrote\n%s\nwant (%s; go test -update rewrites it)\n%s", data, golden, wantData)
	}
}

// roundTrip checks that MarshalAll writes set to what ParseAll reads back
// equal, and that writing that again is stable. It returns what it wrote.
func roundTrip(t *testing.T, set Set) []byte {
	t.Helper()
	data, err := MarshalAll(set)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseAll("again.yaml", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !reflect.DeepEqual(again, set) {
		t.Fatalf("round trip differs:\n%+v\n%+v\n%s", again, set, data)
	}
	data2, err := MarshalAll(again)
	if err != nil || string(data2) != string(data) {
		t.Fatalf("MarshalAll is not stable (%v):\n%s\nthen\n%s", err, data, data2)
	}
	return data
}

// TestReleaseDefaults: what a release that leaves out every optional
// field means.
func TestReleaseDefaults(t *testing.T) {
	set, err := ParseAll("min.yaml", []byte(`apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: r}
spec:
  service: auth
  steps:
    - setWeight: 5
      pause: {}
    - setWeight: 50
      pause:
    - setWeight: 60
      pause: {duration: }
    - verify:
        - tcp:
        - http: {path: /}
        - exec: [ls]
    - setWeight: 100
  analysis:
    breaker:
      open: {p99Above: 1s, errorRateAtLeast: 3.55}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := release.Release{Name: "r", Service: "auth", OnBreach: release.DefaultOnBreach,
		Steps: []release.Step{
			{SetWeight: w(500), Pause: &release.Pause{}},
			{SetWeight: w(5000), Pause: &release.Pause{}},
			{SetWeight: w(6000), Pause: &release.Pause{}},
			{Verify: []release.Gate{
				{TCP: &release.TCPGate{}, Timeout: release.DefaultGateTimeout},
				{HTTP: &release.HTTPGate{Path: "/", ExpectStatus: 200}, Timeout: release.DefaultGateTimeout},
				{Exec: []string{"ls"}, Timeout: release.DefaultGateTimeout},
			}},
			{SetWeight: w(10000)},
		},
		Analysis: release.Analysis{Window: release.DefaultWindow, MinRequests: release.DefaultMinRequests, Breaker: release.Breaker{
			OpenP99Above: time.Second, OpenErrorRate: 0.0355,
			// close: the open latency, half the open rate in 0.01 % steps
			CloseP99AtMost: time.Second, CloseErrorRate: 0.0177, CloseWindows: release.DefaultCloseWindows,
			CoolDown: release.DefaultCoolDown}},
	}
	if !reflect.DeepEqual(set.Releases, []release.Release{want}) {
		t.Fatalf("got\n%+v\nwant\n%+v", set.Releases, want)
	}
	roundTrip(t, set)
}

// TestReleaseErrors: each problem a CanaryRelease can have, at its line,
// with its exact message; a change is "old => new" to relDoc.
func TestReleaseErrors(t *testing.T) {
	noSteps := relDoc[:strings.Index(relDoc, "  steps:")] + "  steps: []\n" + relDoc[strings.Index(relDoc, "  analysis:"):]
	tests := []struct {
		name string
		in   string   // a change "old => new" to relDoc, or a whole file
		want []string // nil: the file is good
	}{
		// The form of the document.
		{"unknown top-level field", "kind: CanaryRelease => kind: CanaryRelease\nstatus: {}",
			[]string{"x.yaml:3: status: unknown field"}},
		{"tenant is not a release field", "name: auth-v2 => name: auth-v2\n  tenant: a",
			[]string{"x.yaml:5: metadata.tenant: unknown field"}},
		{"unknown step field", "      pause: {duration: 5m} =>       wait: 5m",
			[]string{"x.yaml:9: spec.steps[0].wait: unknown field"}},
		{"unknown gate field", "retries: 2 => retries: 2\n          timeot: 5s",
			[]string{"x.yaml:16: spec.steps[1].verify[1].timeot: unknown field"}},
		{"unknown http field", "expectStatus: 204 => expectStatus: 204, method: POST",
			[]string{"x.yaml:13: spec.steps[1].verify[1].http.method: unknown field"}},
		{"unknown breaker field", "coolDown: 90s => coolDown: 90s\n      halfOpen: 5%",
			[]string{"x.yaml:28: spec.analysis.breaker.halfOpen: unknown field"}},
		{"field twice", "service: auth => service: auth\n  service: web",
			[]string{"x.yaml:7: spec.service: is given twice (first on line 6)"}},
		{"kind misspelt", "kind: CanaryRelease => kind: Canaryrelease",
			[]string{`x.yaml:2: kind: "Canaryrelease" is not a kind of Graylane manifest: use Service, CanaryRelease or Tenant`}},
		{"apiVersion wrong", "apiVersion: graylane.io/v1 => apiVersion: graylane.io/v2",
			[]string{`x.yaml:1: apiVersion: "graylane.io/v2" is not supported: use graylane.io/v1`}},
		{"steps a mapping", "    - setRate: 500 =>     - setRate: 500\n      verify: {tcp: {}}",
			[]string{"x.yaml:18: spec.steps[2].verify: must be a list, not a mapping"}},
		{"pause a scalar", "pause: {duration: 5m} => pause: 5m",
			[]string{`x.yaml:9: spec.steps[0].pause: must be a mapping of fields, not the single value "5m"`}},
		{"setWeight a list", "setWeight: 15 => setWeight: [15]",
			[]string{"x.yaml:10: spec.steps[1].setWeight: must be a single value, not a list"}},
		{"exec a string", `exec: [sh, -c, "curl -sf http://10.2.0.11:8080/ | jq -e '.ok'"] => exec: "sh -c true"`,
			[]string{`x.yaml:16: spec.steps[1].verify[2].exec: must be a list, not the single value "sh -c true"`}},
		{"exec item a list", `exec: [sh, -c, "curl -sf http://10.2.0.11:8080/ | jq -e '.ok'"] => exec: [[sh]]`,
			[]string{"x.yaml:16: spec.steps[1].verify[2].exec[0]: must be a single value, not a list"}},
		{"expectJSON a list", `expectJSON: {".db.status": UP, ".items[0].ok": "true"} => expectJSON: [a]`,
			[]string{"x.yaml:13: spec.steps[1].verify[1].http.expectJSON: must be a mapping, not a list"}},
		{"expectJSON value a mapping", `".db.status": UP => ".db.status": {a: b}`,
			[]string{`x.yaml:13: spec.steps[1].verify[1].http.expectJSON[".db.status"]: must be a single value, not a mapping`}},

		// metadata and service.
		{"name missing", "  name: auth-v2\n => ",
			[]string{`x.yaml:3: metadata.name: "" must be 1 to 63 characters of a-z, 0-9 and -`}},
		{"name bad", "name: auth-v2 => name: Auth_v2",
			[]string{`x.yaml:4: metadata.name: "Auth_v2" must be 1 to 63 characters of a-z, 0-9 and -`}},
		{"service missing", "  service: auth\n => ",
			[]string{"x.yaml:5: spec.service: is required: the name of the Service whose canary this release moves"}},
		{"service bad", "service: auth => service: auth.v1",
			[]string{`x.yaml:6: spec.service: "auth.v1" is not a service name (1 to 63 characters of a-z, 0-9 and -)`}},

		// Steps.
		{"steps empty", noSteps,
			[]string{"x.yaml:7: spec.steps: is required: give at least one step, such as - setWeight: 5"}},
		{"weight too fine", "setWeight: 5 => setWeight: 5.555",
			[]string{`x.yaml:8: spec.steps[0].setWeight: weight "5.555" has more than two decimals: the split has 0.01% steps`}},
		{"weight above 100", "setWeight: 15 => setWeight: 101",
			[]string{`x.yaml:10: spec.steps[1].setWeight: weight "101" is above 100%`}},
		{"weight empty", "setWeight: 15 => setWeight: ''",
			[]string{`x.yaml:10: spec.steps[1].setWeight: "" is not a weight: use a percentage such as 5, 5% or 0.25%`}},
		{"rate 0", "setRate: 500 => setRate: 0",
			[]string{`x.yaml:17: spec.steps[2].setRate: "0": give new canary flows per second, a whole number from 1 to 10000000`}},
		{"rate too high", "setRate: 500 => setRate: 10000001",
			[]string{`x.yaml:17: spec.steps[2].setRate: "10000001": give new canary flows per second, a whole number from 1 to 10000000`}},
		{"rate beyond uint64", "setRate: 500 => setRate: 99999999999999999999",
			[]string{`x.yaml:17: spec.steps[2].setRate: "99999999999999999999": give new canary flows per second, a whole number from 1 to 10000000`}},
		{"rate not a number", "setRate: 500 => setRate: lots",
			[]string{`x.yaml:17: spec.steps[2].setRate: "lots": give new canary flows per second, a whole number from 1 to 10000000`}},
		{"weight and rate", "    - setRate: 500 =>     - setRate: 500\n      setWeight: 5",
			[]string{"x.yaml:17: spec.steps[2]: sets both setWeight and setRate: give one of them per step (split it into two steps)"}},
		{"weight and bad rate", "    - setRate: 500 =>     - setRate: x\n      setWeight: 5", []string{
			`x.yaml:17: spec.steps[2].setRate: "x": give new canary flows per second, a whole number from 1 to 10000000`,
			"x.yaml:17: spec.steps[2]: sets both setWeight and setRate: give one of them per step (split it into two steps)",
		}},
		{"empty step", "    - pause: {} =>     - {}",
			[]string{"x.yaml:18: spec.steps[3]: does nothing: give setWeight, setRate, pause or verify"}},
		{"null step", "    - pause: {} =>     - ~",
			[]string{"x.yaml:18: spec.steps[3]: does nothing: give setWeight, setRate, pause or verify"}},
		{"step with empty verify", "    - pause: {} =>     - verify: []",
			[]string{"x.yaml:18: spec.steps[3]: does nothing: give setWeight, setRate, pause or verify"}},
		{"pause not a duration", "duration: 5m => duration: soon",
			[]string{`x.yaml:9: spec.steps[0].pause.duration: "soon" is not a duration: use one such as 300ms, 60s or 5m`}},
		{"pause without unit", "duration: 5m => duration: 300",
			[]string{`x.yaml:9: spec.steps[0].pause.duration: "300" is not a duration: use one such as 300ms, 60s or 5m`}},
		{"pause negative", "duration: 5m => duration: -5m",
			[]string{"x.yaml:9: spec.steps[0].pause.duration: -5m0s is negative: give a duration such as 5m, or none to wait for rollout resume"}},

		// Gates.
		{"gate checks nothing", "        - tcp: {} =>         - {}",
			[]string{"x.yaml:12: spec.steps[1].verify[0]: checks nothing: give one of tcp: {}, http: {path: /healthz}, exec: [command, args...] or shadow: {from: capture}"}},
		{"gate only a timeout", "        - tcp: {} =>         - timeout: 5s",
			[]string{"x.yaml:12: spec.steps[1].verify[0]: checks nothing: give one of tcp: {}, http: {path: /healthz}, exec: [command, args...] or shadow: {from: capture}"}},
		{"gate checks two", "        - tcp: {} =>         - tcp: {}\n          exec: [ls]",
			[]string{"x.yaml:12: spec.steps[1].verify[0]: gives tcp and exec: one gate does one check (make it 2 gates)"}},
		{"http with nothing", "        - tcp: {} =>         - http:",
			[]string{"x.yaml:12: spec.steps[1].verify[0].http.path: is required: the path (and query) to GET, such as /healthz"}},
		{"http without path", `path: "/healthz?full=1", => `,
			[]string{"x.yaml:13: spec.steps[1].verify[1].http.path: is required: the path (and query) to GET, such as /healthz"}},
		{"http path relative", `path: "/healthz?full=1" => path: healthz`,
			[]string{`x.yaml:13: spec.steps[1].verify[1].http.path: "healthz" must start with / and hold no spaces, control characters or #, such as /healthz?full=1`}},
		{"http path a URL", `path: "/healthz?full=1" => path: "http://10.2.0.11/healthz"`,
			[]string{`x.yaml:13: spec.steps[1].verify[1].http.path: "http://10.2.0.11/healthz" must start with / and hold no spaces, control characters or #, such as /healthz?full=1`}},
		{"status not a number", "expectStatus: 204 => expectStatus: ok",
			[]string{`x.yaml:13: spec.steps[1].verify[1].http.expectStatus: "ok" is not an HTTP status: give 100 to 599 (default 200)`}},
		{"status out of range", "expectStatus: 204 => expectStatus: 99",
			[]string{"x.yaml:13: spec.steps[1].verify[1].http.expectStatus: 99 is not an HTTP status: give 100 to 599 (default 200)"}},
		{"JSON path without dot", `".db.status": UP => "db.status": UP`,
			[]string{`x.yaml:13: spec.steps[1].verify[1].http.expectJSON["db.status"]: is not a JSON path: use one such as .db.status or .items[0].state`}},
		{"JSON path bad index", `".db.status": UP => ".db[x]": UP`,
			[]string{`x.yaml:13: spec.steps[1].verify[1].http.expectJSON[".db[x]"]: is not a JSON path: use one such as .db.status or .items[0].state`}},
		{"JSON value null", `".db.status": UP => ".db.status": ~`,
			[]string{`x.yaml:13: spec.steps[1].verify[1].http.expectJSON[".db.status"]: has no value: give the text the field must have, such as UP ("null" for a JSON null, "" for an empty string)`}},
		{"JSON values null", `{".db.status": UP, ".items[0].ok": "true"} => {".items[0].ok": ~, ".db.status": ~, .ok: x}`, []string{
			`x.yaml:13: spec.steps[1].verify[1].http.expectJSON[".db.status"]: has no value: give the text the field must have, such as UP ("null" for a JSON null, "" for an empty string)`,
			`x.yaml:13: spec.steps[1].verify[1].http.expectJSON[".items[0].ok"]: has no value: give the text the field must have, such as UP ("null" for a JSON null, "" for an empty string)`,
		}},
		{"JSON key twice", `".db.status": UP => ".db.status": UP, ".db.status": DOWN`,
			[]string{`x.yaml:13: spec.steps[1].verify[1].http.expectJSON[".db.status"]: is given twice, or is not a plain key`}},
		{"exec empty", `exec: [sh, -c, "curl -sf http://10.2.0.11:8080/ | jq -e '.ok'"] => exec: []`,
			[]string{`x.yaml:16: spec.steps[1].verify[2].exec: is empty: give the command and its arguments, such as [sh, -c, "curl -sf http://10.2.0.11:8080/healthz"]`}},
		{"exec null", `exec: [sh, -c, "curl -sf http://10.2.0.11:8080/ | jq -e '.ok'"] => exec:`,
			[]string{`x.yaml:16: spec.steps[1].verify[2].exec: is empty: give the command and its arguments, such as [sh, -c, "curl -sf http://10.2.0.11:8080/healthz"]`}},
		{"exec null item", `exec: [sh, -c, => exec: [sh, ~,`,
			[]string{`x.yaml:16: spec.steps[1].verify[2].exec[1]: is empty: give a command or an argument ("" for an empty argument)`}},
		{"exec command empty", `exec: [sh, -c, => exec: ["", -c,`,
			[]string{"x.yaml:16: spec.steps[1].verify[2].exec[0]: is empty: the first item is the command to run"}},
		{"timeout not a duration", "timeout: 3s => timeout: 3",
			[]string{`x.yaml:14: spec.steps[1].verify[1].timeout: "3" is not a duration: use one such as 300ms, 60s or 5m`}},
		{"timeout 0", "timeout: 3s => timeout: 0s",
			[]string{"x.yaml:14: spec.steps[1].verify[1].timeout: 0s: give a duration above 0 and at most 10m0s (default 10s)"}},
		{"timeout too long", "timeout: 3s => timeout: 1h",
			[]string{"x.yaml:14: spec.steps[1].verify[1].timeout: 1h0m0s: give a duration above 0 and at most 10m0s (default 10s)"}},
		{"retries not a number", "retries: 2 => retries: two",
			[]string{`x.yaml:15: spec.steps[1].verify[1].retries: "two": give a whole number of retries, 0 to 10`}},
		{"retries too many", "retries: 2 => retries: 11",
			[]string{"x.yaml:15: spec.steps[1].verify[1].retries: 11: give 0 to 10"}},
		{"retries negative", "retries: 2 => retries: -1",
			[]string{"x.yaml:15: spec.steps[1].verify[1].retries: -1: give 0 to 10"}},

		// Analysis.
		{"window not a duration", "window: 30s => window: 30",
			[]string{`x.yaml:22: spec.analysis.window: "30" is not a duration: use one such as 300ms, 60s or 5m`}},
		{"window short", "window: 30s => window: 500ms",
			[]string{"x.yaml:22: spec.analysis.window: 500ms: give 1s to 10m0s"}},
		{"window long", "window: 30s => window: 1h",
			[]string{"x.yaml:22: spec.analysis.window: 1h0m0s: give 1s to 10m0s"}},
		{"minRequests negative", "minRequests: 0 => minRequests: -1",
			[]string{`x.yaml:23: spec.analysis.minRequests: "-1": give a whole number of responses, 0 (always judge) to 1000000000`}},
		{"minRequests too many", "minRequests: 0 => minRequests: 2000000000",
			[]string{"x.yaml:23: spec.analysis.minRequests: 2000000000: give 0 (always judge) to 1000000000 responses"}},
		{"open missing", "      open: {p99Above: 800ms, errorRateAtLeast: 3.5%}\n => ", []string{
			"x.yaml:24: spec.analysis.breaker.open.p99Above: is required: the P99 above which (with the error rate) the canary is pulled back, such as 800ms",
			"x.yaml:24: spec.analysis.breaker.open.errorRateAtLeast: is required: the error rate at least which (with the P99) the canary is pulled back, such as 3.5%",
		}},
		{"open p99 missing", "p99Above: 800ms, => ",
			[]string{"x.yaml:25: spec.analysis.breaker.open.p99Above: is required: the P99 above which (with the error rate) the canary is pulled back, such as 800ms"}},
		{"open p99 not a duration", "p99Above: 800ms => p99Above: 800",
			[]string{`x.yaml:25: spec.analysis.breaker.open.p99Above: "800" is not a duration: use one such as 300ms, 60s or 5m`}},
		{"open p99 zero", "p99Above: 800ms => p99Above: 0s",
			[]string{"x.yaml:25: spec.analysis.breaker.open.p99Above: 0s: give a duration of at least 1µs, such as 800ms"}},
		{"open rate too fine", "errorRateAtLeast: 3.5% => errorRateAtLeast: 3.555%",
			[]string{`x.yaml:25: spec.analysis.breaker.open.errorRateAtLeast: "3.555%" is not an error rate: use a percentage from 0% to 100% with at most two decimals, such as 3.5%`}},
		{"open rate above 100", "errorRateAtLeast: 3.5% => errorRateAtLeast: 101%",
			[]string{`x.yaml:25: spec.analysis.breaker.open.errorRateAtLeast: "101%" is not an error rate: use a percentage from 0% to 100% with at most two decimals, such as 3.5%`}},
		{"open rate zero", "errorRateAtLeast: 3.5% => errorRateAtLeast: 0%",
			[]string{"x.yaml:25: spec.analysis.breaker.open.errorRateAtLeast: 0%: give a percentage above 0% and at most 100% in 0.01% steps, such as 3.5%"}},
		{"close p99 above open", "p99AtMost: 600ms => p99AtMost: 900ms",
			[]string{"x.yaml:26: spec.analysis.breaker.close.p99AtMost: 900ms: give a duration of at least 1µs and at most open.p99Above (800ms)"}},
		{"close p99 not a duration", "p99AtMost: 600ms => p99AtMost: fast",
			[]string{`x.yaml:26: spec.analysis.breaker.close.p99AtMost: "fast" is not a duration: use one such as 300ms, 60s or 5m`}},
		{"close rate at open", "errorRateAtMost: 1.2% => errorRateAtMost: 3.5",
			[]string{"x.yaml:26: spec.analysis.breaker.close.errorRateAtMost: 3.5%: give a percentage in 0.01% steps below open.errorRateAtLeast (3.5%)"}},
		{"close rate bad", "errorRateAtMost: 1.2% => errorRateAtMost: low",
			[]string{`x.yaml:26: spec.analysis.breaker.close.errorRateAtMost: "low" is not an error rate: use a percentage from 0% to 100% with at most two decimals, such as 3.5%`}},
		{"close judged only against a good open", "p99Above: 800ms, errorRateAtLeast: 3.5% => p99Above: x, errorRateAtLeast: y", []string{
			`x.yaml:25: spec.analysis.breaker.open.p99Above: "x" is not a duration: use one such as 300ms, 60s or 5m`,
			`x.yaml:25: spec.analysis.breaker.open.errorRateAtLeast: "y" is not an error rate: use a percentage from 0% to 100% with at most two decimals, such as 3.5%`,
		}},
		{"close windows 0", "windows: 3 => windows: 0",
			[]string{"x.yaml:26: spec.analysis.breaker.close.windows: 0: give 1 to 100 healthy windows in a row (default 2)"}},
		{"close windows not a number", "windows: 3 => windows: many",
			[]string{`x.yaml:26: spec.analysis.breaker.close.windows: "many": give a whole number of healthy windows in a row, 1 to 100`}},
		{"cool-down short", "coolDown: 90s => coolDown: 10ms",
			[]string{"x.yaml:27: spec.analysis.breaker.coolDown: 10ms: give at least 1s (default 1m0s)"}},
		{"cool-down not a duration", "coolDown: 90s => coolDown: 90",
			[]string{`x.yaml:27: spec.analysis.breaker.coolDown: "90" is not a duration: use one such as 300ms, 60s or 5m`}},
		{"onBreach unknown", "onBreach: pause => onBreach: explode",
			[]string{`x.yaml:28: spec.onBreach: "explode": use rollback (canary weight 0 at once) or pause`}},
		{"onBreach empty", "onBreach: pause => onBreach: ''",
			[]string{`x.yaml:28: spec.onBreach: "": use rollback (canary weight 0 at once) or pause`}},
		{"analysis missing", "  analysis:\n    window: 30s\n    minRequests: 0\n    breaker:\n      open: {p99Above: 800ms, errorRateAtLeast: 3.5%}\n      close: {p99AtMost: 600ms, errorRateAtMost: 1.2%, windows: 3}\n      coolDown: 90s\n => ", []string{
			"x.yaml:5: spec.analysis.breaker.open.p99Above: is required: the P99 above which (with the error rate) the canary is pulled back, such as 800ms",
			"x.yaml:5: spec.analysis.breaker.open.errorRateAtLeast: is required: the error rate at least which (with the P99) the canary is pulled back, such as 3.5%",
		}},

		// Across documents.
		{"release twice", relDoc + "---\n" + relDoc,
			[]string{`x.yaml:33: metadata.name: release "auth-v2" is also defined at x.yaml:4`}},
		{"two bad releases", strings.Replace(relDoc, "window: 30s", "window: 0s", 1) + "---\n" + strings.NewReplacer("name: auth-v2", "name: auth-v3", "setRate: 500", "setRate: 0").Replace(relDoc), []string{
			`x.yaml:46: spec.steps[2].setRate: "0": give new canary flows per second, a whole number from 1 to 10000000`,
			"x.yaml:22: spec.analysis.window: 0s: give 1s to 10m0s",
		}},
		{"a service beside a release", doc + "---\n" + relDoc, nil},
		{"a service and a release of one name", doc + "---\n" + strings.Replace(relDoc, "name: auth-v2", "name: auth", 1), nil},
		{"a bad release beside a good service", strings.Replace(doc, "weight: 5%", "weight: 5%%", 1) + "---\n" + strings.Replace(relDoc, "retries: 2", "retries: 20", 1), []string{
			`x.yaml:13: spec.canary.weight: "5%%" is not a weight: use a percentage such as 5, 5% or 0.25%`,
			"x.yaml:29: spec.steps[1].verify[1].retries: 20: give 0 to 10",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if old, new, ok := strings.Cut(tt.in, " => "); ok && !strings.HasPrefix(tt.in, "apiVersion: graylane.io/v1\n") {
				if !strings.Contains(relDoc, old) {
					t.Fatalf("relDoc does not contain %q", old)
				}
				in = strings.Replace(relDoc, old, new, 1)
			}
			set, err := ParseAll("x.yaml", []byte(in))
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				roundTrip(t, set)
				return
			}
			checkExact(t, err, tt.want)
		})
	}
}

// checkExact checks that err is exactly the located errors want, in order.
func checkExact(t *testing.T, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error; want\n  %s", strings.Join(want, "\n  "))
	}
	var got []string
	for _, e := range strictyaml.Leaves(err) {
		var me *Error
		if !errors.As(e, &me) || me.File == "" || me.Line == 0 {
			t.Errorf("%v is not an *Error at a line", e)
		}
		got = append(got, e.Error())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestBadRelease: every problem of the bad release of testdata, each at
// its line, in order: first what does not read, then what does not
// validate.
func TestBadRelease(t *testing.T) {
	_, err := LoadAll(filepath.Join(releasesDir, "bad.yaml"))
	f := filepath.Join(releasesDir, "bad.yaml")
	want := []string{
		"18: spec.steps[2].verify[2].timeot: unknown field",
		`10: spec.steps[2].setWeight: weight "101%" is above 100%`,
		`11: spec.steps[2].pause.duration: "soon" is not a duration: use one such as 300ms, 60s or 5m`,
		`19: spec.steps[3].setRate: "lots": give new canary flows per second, a whole number from 1 to 10000000`,
		`23: spec.analysis.breaker.open.errorRateAtLeast: "3.555%" is not an error rate: use a percentage from 0% to 100% with at most two decimals, such as 3.5%`,
		`4: metadata.name: "Auth_v3" must be 1 to 63 characters of a-z, 0-9 and -`,
		"5: spec.service: is required: the name of the Service whose canary this release moves",
		"7: spec.steps[0]: sets both setWeight and setRate: give one of them per step (split it into two steps)",
		"9: spec.steps[1]: does nothing: give setWeight, setRate, pause or verify",
		`13: spec.steps[2].verify[0].http.path: "healthz" must start with / and hold no spaces, control characters or #, such as /healthz?full=1`,
		`13: spec.steps[2].verify[0].http.expectJSON["db.status"]: is not a JSON path: use one such as .db.status or .items[0].state`,
		"14: spec.steps[2].verify[1]: gives tcp and exec: one gate does one check (make it 2 gates)",
		"17: spec.steps[2].verify[2].retries: 11: give 0 to 10",
		"21: spec.analysis.window: 0s: give 1s to 10m0s",
		"24: spec.analysis.breaker.close.p99AtMost: 900ms: give a duration of at least 1µs and at most open.p99Above (800ms)",
		"24: spec.analysis.breaker.close.windows: 0: give 1 to 100 healthy windows in a row (default 2)",
		`25: spec.onBreach: "explode": use rollback (canary weight 0 at once) or pause`,
	}
	for i := range want {
		want[i] = f + ":" + want[i]
	}
	checkExact(t, err, want)
}

// TestDuplicateReleaseAcrossFiles: release names are unique in a
// directory too; the later file's is the one reported.
func TestDuplicateReleaseAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string]string{"a.yaml": relDoc, "b.yaml": "# the same again\n" + relDoc} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := LoadAll(dir)
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	checkExact(t, err, []string{fmt.Sprintf(`%s:5: metadata.name: release "auth-v2" is also defined at %s:4`, b, a)})
}

// TestServicesOnly: ParseFile and Load return the services and leave the
// releases out, but a bad release still fails the file.
func TestServicesOnly(t *testing.T) {
	data := doc + "---\n" + relDoc
	svcs, err := ParseFile("x.yaml", []byte(data))
	if err != nil || len(svcs) != 1 || svcs[0].Name != "auth" {
		t.Fatalf("ParseFile = %+v, %v; want the service auth", svcs, err)
	}
	svcs, err = ParseFile("x.yaml", []byte(strings.Replace(data, "onBreach: pause", "onBreach: stop", 1)))
	if svcs != nil {
		t.Errorf("ParseFile of a file with a bad release returned %+v", svcs)
	}
	checkExact(t, err, []string{`x.yaml:42: spec.onBreach: "stop": use rollback (canary weight 0 at once) or pause`})

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "all.yaml"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if svcs, err := Load(dir); err != nil || len(svcs) != 1 {
		t.Fatalf("Load = %+v, %v; want the service", svcs, err)
	}
	set, err := LoadAll(dir)
	if err != nil || len(set.Services) != 1 || !reflect.DeepEqual(set.Releases, []release.Release{relDocWant()}) {
		t.Fatalf("LoadAll = %+v, %v; want the service and the release", set, err)
	}
}

// TestMarshalAllRefuses: MarshalAll writes only what ParseAll reads.
func TestMarshalAllRefuses(t *testing.T) {
	r := relDocWant()
	bad := r.Clone()
	bad.Analysis.Breaker.CloseErrorRate = 0.01775 // not a 0.01 % step: would not read back equal
	if _, err := MarshalAll(Set{Releases: []release.Release{bad}}); err == nil ||
		!strings.Contains(err.Error(), `marshal release "auth-v2": spec.analysis.breaker.close.errorRateAtMost: 1.775%`) {
		t.Errorf("MarshalAll of a rate that is not a 0.01 %% step: %v", err)
	}
	if _, err := MarshalAll(Set{Releases: []release.Release{r, r.Clone()}}); err == nil ||
		err.Error() != `marshal releases: release "auth-v2" is given twice` {
		t.Errorf("MarshalAll of a release twice: %v", err)
	}
	out, err := MarshalAll(Set{})
	if err != nil || len(out) != 0 {
		t.Errorf("MarshalAll of nothing = %q, %v", out, err)
	}
}

// TestMarshalAllBoth: services first, then releases, as separate documents.
func TestMarshalAllBoth(t *testing.T) {
	set, err := ParseAll("x.yaml", []byte(relDoc+"---\n"+doc+"---\n"+strings.Replace(relDoc, "name: auth-v2", "name: auth-v3", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Services) != 1 || len(set.Releases) != 2 || set.Releases[0].Name != "auth-v2" || set.Releases[1].Name != "auth-v3" {
		t.Fatalf("got %+v", set)
	}
	data := roundTrip(t, set)
	if n := strings.Count(string(data), "\n---\n"); n != 2 {
		t.Errorf("%d document separators, want 2:\n%s", n, data)
	}
}

// TestAliasBomb: lists of aliases nested along the document's own shape
// (steps → verify → exec: 300³ values) cost bounded work and a clear
// error, not a hang.
func TestAliasBomb(t *testing.T) {
	list := func(item string) string { return "[" + strings.Repeat(item+", ", 299) + item + "]" }
	doc := fmt.Sprintf(`apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: r}
e: &e %s
v: &v %s
s: &s %s
spec: {service: auth, steps: *s}
`, list(`"true"`), list("{exec: *e}"), list("{verify: *v}"))
	start := time.Now()
	_, err := ParseAll("bomb.yaml", []byte(doc))
	if err == nil || !strings.Contains(err.Error(), "too large, or its aliases repeat it too often") || time.Since(start) > 5*time.Second {
		t.Fatalf("an alias bomb: %v after %v", err, time.Since(start))
	}
	t.Logf("refused after %v", time.Since(start))
}
