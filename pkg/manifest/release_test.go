package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
)

const releasesDir = "../../testdata/releases"

func w(v service.Weight) *service.Weight { return &v }

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
	data, err := MarshalAll(set)
	if err != nil {
		t.Fatal(err)
	}
	again, err := ParseAll("again.yaml", data)
	if err != nil {
		t.Fatalf("%v\n%s", err, data)
	}
	if !reflect.DeepEqual(again, set) {
		t.Fatalf("round trip differs:\n%s", data)
	}
	// Callers that take services only get the service.
	svcs, err := Load(filepath.Join(releasesDir, "auth-v2.yaml"))
	if err != nil || len(svcs) != 1 {
		t.Fatalf("Load: %v %v", svcs, err)
	}
}

// TestReleaseDefaults: what a minimal release means.
func TestReleaseDefaults(t *testing.T) {
	set, err := ParseAll("min.yaml", []byte(`apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: r}
spec:
  service: auth
  steps:
    - setWeight: 5
      pause: {}
    - setWeight: 100
      pause:
  analysis:
    breaker:
      open: {p99Above: 1s, errorRateAtLeast: 4}
`))
	if err != nil {
		t.Fatal(err)
	}
	r := set.Releases[0]
	b := r.Analysis.Breaker
	if r.Analysis.Window != release.DefaultWindow || r.Analysis.MinRequests != release.DefaultMinRequests ||
		b.CloseP99AtMost != time.Second || b.CloseErrorRate != 0.02 || b.CloseWindows != 2 || b.CoolDown != release.DefaultCoolDown ||
		r.OnBreach != release.Rollback || r.Steps[0].Pause == nil || r.Steps[0].Pause.Duration != 0 || r.Steps[1].Pause == nil {
		t.Fatalf("defaults: %+v", r)
	}
}

// TestBadRelease: every problem of a bad release, each at its line.
func TestBadRelease(t *testing.T) {
	_, err := LoadAll(filepath.Join(releasesDir, "bad.yaml"))
	checkErrors(t, err, []string{
		"bad.yaml:18: spec.steps[2].verify[2].timeot: unknown field",
		`bad.yaml:10: spec.steps[2].setWeight: weight "101%" is above 100%`,
		`bad.yaml:11: spec.steps[2].pause.duration: "soon" is not a duration`,
		`bad.yaml:19: spec.steps[3].setRate: "lots": give new canary flows per second`,
		`bad.yaml:23: spec.analysis.breaker.open.errorRateAtLeast: "3.555%" is not a rate`,
		`bad.yaml:4: metadata.name: "Auth_v3" must be 1 to 63 characters`,
		"bad.yaml:5: spec.service: is required",
		"bad.yaml:7: spec.steps[0]: sets both setWeight and setRate",
		"bad.yaml:9: spec.steps[1]: does nothing",
		`bad.yaml:13: spec.steps[2].verify[0].http.path: "healthz" must start with /`,
		`bad.yaml:13: spec.steps[2].verify[0].http.expectJSON["db.status"]: is not a JSON path`,
		"bad.yaml:14: spec.steps[2].verify[1]: give exactly one of tcp, http and exec (this gate has 2)",
		"bad.yaml:17: spec.steps[2].verify[2].retries: 11: give 0 to 10",
		"bad.yaml:21: spec.analysis.window: 0s: give 1s to 10m0s",
		"bad.yaml:24: spec.analysis.breaker.close.p99AtMost: 900ms must be positive and at most open.p99Above (800ms)",
		"bad.yaml:24: spec.analysis.breaker.close.windows: 0: give 1 to 100",
		`bad.yaml:25: spec.onBreach: "explode": use rollback or pause`,
	})
}

// TestDuplicateRelease: release names are unique across documents.
func TestDuplicateRelease(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(releasesDir, "auth-v2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)[strings.Index(string(data), "---"):]
	_, err = ParseAll("dup.yaml", append(data, doc...))
	if err == nil || !strings.Contains(err.Error(), `dup.yaml:41: metadata.name: release "auth-v2" is also defined at dup.yaml:16`) {
		t.Fatalf("a release twice: %v", err)
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
