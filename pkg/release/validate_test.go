package release

import (
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

func weight(w service.Weight) *service.Weight { return &w }

// valid returns a release that uses every field, and validates.
func valid() Release {
	return Release{
		Name:    "auth-v2",
		Service: "auth",
		Steps: []Step{
			{SetWeight: weight(500), Pause: &Pause{Duration: 5 * time.Minute}},
			{SetWeight: weight(1500), Verify: []Gate{
				{TCP: &TCPGate{}, Timeout: DefaultGateTimeout},
				{HTTP: &HTTPGate{Path: "/healthz?full=1", ExpectStatus: 200, ExpectJSON: map[string]string{".db.status": "UP"}},
					Timeout: 3 * time.Second, Retries: 2},
				{Exec: []string{"sh", "-c", "true"}, Timeout: MaxGateTime, Retries: MaxRetries},
			}},
			{SetRate: 500},
			{Pause: &Pause{}},
			{Verify: []Gate{{TCP: &TCPGate{}, Timeout: time.Second}}},
			{SetWeight: weight(service.MaxWeight)},
		},
		Analysis: Analysis{Window: time.Minute, MinRequests: 100, Breaker: Breaker{
			OpenP99Above: 800 * time.Millisecond, OpenErrorRate: 0.035,
			CloseP99AtMost: 600 * time.Millisecond, CloseErrorRate: 0.012, CloseWindows: 2,
			CoolDown: time.Minute,
		}},
		OnBreach: Rollback,
	}
}

func TestValidateGood(t *testing.T) {
	r := valid()
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	// The edges of every range.
	r.Steps = []Step{{SetRate: MaxRate}, {SetWeight: weight(0)}, {Pause: &Pause{}}}
	r.Analysis.Window, r.Analysis.MinRequests = MinWindow, 0
	r.Analysis.Breaker = Breaker{OpenP99Above: MinLatency, OpenErrorRate: 1, CloseP99AtMost: MinLatency,
		CloseErrorRate: 0, CloseWindows: MaxCloseWin, CoolDown: MinCoolDown}
	r.OnBreach = PauseRelease
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	r.Analysis.Window, r.Analysis.MinRequests = MaxWindow, MaxMinRequests
	r.Analysis.Breaker.OpenErrorRate, r.Analysis.Breaker.CloseErrorRate = 0.0001, 0
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestValidate: each rule, its path and its exact message.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *Release)
		want   []string
	}{
		{"name empty", func(r *Release) { r.Name = "" },
			[]string{`metadata.name: "" must be 1 to 63 characters of a-z, 0-9 and -`}},
		{"name upper case", func(r *Release) { r.Name = "Auth" },
			[]string{`metadata.name: "Auth" must be 1 to 63 characters of a-z, 0-9 and -`}},
		{"service missing", func(r *Release) { r.Service = "" },
			[]string{"spec.service: is required: the name of the Service whose canary this release moves"}},
		{"service bad name", func(r *Release) { r.Service = "auth_v1" },
			[]string{`spec.service: "auth_v1" is not a service name (1 to 63 characters of a-z, 0-9 and -)`}},
		{"no steps", func(r *Release) { r.Steps = nil },
			[]string{"spec.steps: is required: give at least one step, such as - setWeight: 5"}},
		{"too many steps", func(r *Release) { r.Steps = make([]Step, MaxSteps+1); fillSteps(r.Steps) },
			[]string{"spec.steps: has 101 steps, at most 100"}},
		{"weight and rate", func(r *Release) { r.Steps[2].SetWeight = weight(5) },
			[]string{"spec.steps[2]: sets both setWeight and setRate: give one of them per step (split it into two steps)"}},
		{"empty step", func(r *Release) { r.Steps[3].Pause = nil },
			[]string{"spec.steps[3]: does nothing: give setWeight, setRate, pause or verify"}},
		{"weight above 100", func(r *Release) { r.Steps[0].SetWeight = weight(10001) },
			[]string{"spec.steps[0].setWeight: 100.01% is above 100%"}},
		{"rate too high", func(r *Release) { r.Steps[2].SetRate = MaxRate + 1 },
			[]string{"spec.steps[2].setRate: 10000001: give new canary flows per second, a whole number from 1 to 10000000"}},
		{"pause negative", func(r *Release) { r.Steps[0].Pause.Duration = -time.Second },
			[]string{"spec.steps[0].pause.duration: -1s is negative: give a duration such as 5m, or none to wait for rollout resume"}},
		{"too many gates", func(r *Release) {
			r.Steps[4].Verify = make([]Gate, MaxGates+1)
			for i := range r.Steps[4].Verify {
				r.Steps[4].Verify[i] = Gate{TCP: &TCPGate{}, Timeout: time.Second}
			}
		}, []string{"spec.steps[4].verify: has 21 gates, at most 20"}},
		{"gate checks nothing", func(r *Release) { r.Steps[1].Verify[0].TCP = nil },
			[]string{"spec.steps[1].verify[0]: checks nothing: give one of tcp: {}, http: {path: /healthz}, exec: [command, args...] or shadow: {from: capture}"}},
		{"gate checks two", func(r *Release) { r.Steps[1].Verify[2].TCP = &TCPGate{} },
			[]string{"spec.steps[1].verify[2]: gives tcp and exec: one gate does one check (make it 2 gates)"}},
		{"gate checks three", func(r *Release) {
			g := &r.Steps[1].Verify[1]
			g.TCP, g.Exec = &TCPGate{}, []string{"true"}
		}, []string{"spec.steps[1].verify[1]: gives tcp and http and exec: one gate does one check (make it 3 gates)"}},
		{"http path missing", func(r *Release) { r.Steps[1].Verify[1].HTTP.Path = "" },
			[]string{"spec.steps[1].verify[1].http.path: is required: the path (and query) to GET, such as /healthz"}},
		{"http path relative", func(r *Release) { r.Steps[1].Verify[1].HTTP.Path = "healthz" },
			[]string{`spec.steps[1].verify[1].http.path: "healthz" must start with / and hold no spaces, control characters or #, such as /healthz?full=1`}},
		{"http path with space", func(r *Release) { r.Steps[1].Verify[1].HTTP.Path = "/a b" },
			[]string{`spec.steps[1].verify[1].http.path: "/a b" must start with / and hold no spaces, control characters or #, such as /healthz?full=1`}},
		{"http path with fragment", func(r *Release) { r.Steps[1].Verify[1].HTTP.Path = "/a#b" },
			[]string{`spec.steps[1].verify[1].http.path: "/a#b" must start with / and hold no spaces, control characters or #, such as /healthz?full=1`}},
		{"http path naming a host", func(r *Release) { r.Steps[1].Verify[1].HTTP.Path = "//evil/x" },
			[]string{`spec.steps[1].verify[1].http.path: "//evil/x" must start with / and hold no spaces, control characters or #, such as /healthz?full=1`}},
		{"status 0", func(r *Release) { r.Steps[1].Verify[1].HTTP.ExpectStatus = 0 },
			[]string{"spec.steps[1].verify[1].http.expectStatus: 0 is not an HTTP status: give 100 to 599 (default 200)"}},
		{"status 600", func(r *Release) { r.Steps[1].Verify[1].HTTP.ExpectStatus = 600 },
			[]string{"spec.steps[1].verify[1].http.expectStatus: 600 is not an HTTP status: give 100 to 599 (default 200)"}},
		{"too many JSON fields", func(r *Release) {
			m := r.Steps[1].Verify[1].HTTP.ExpectJSON
			for i := range MaxExpectJSON {
				m["."+strings.Repeat("a", i+1)] = "x"
			}
		}, []string{"spec.steps[1].verify[1].http.expectJSON: has 33 fields, at most 32"}},
		{"JSON paths", func(r *Release) {
			m := r.Steps[1].Verify[1].HTTP.ExpectJSON
			m["db.status"], m[".a..b"] = "UP", "x"
		}, []string{
			`spec.steps[1].verify[1].http.expectJSON[".a..b"]: is not a JSON path: use one such as .db.status or .items[0].state`,
			`spec.steps[1].verify[1].http.expectJSON["db.status"]: is not a JSON path: use one such as .db.status or .items[0].state`,
		}},
		{"exec command empty", func(r *Release) { r.Steps[1].Verify[2].Exec[0] = " " },
			[]string{"spec.steps[1].verify[2].exec[0]: is empty: the first item is the command to run"}},
		{"timeout 0", func(r *Release) { r.Steps[1].Verify[0].Timeout = 0 },
			[]string{"spec.steps[1].verify[0].timeout: 0s: give a duration above 0 and at most 10m0s (default 10s)"}},
		{"timeout too long", func(r *Release) { r.Steps[1].Verify[0].Timeout = MaxGateTime + 1 },
			[]string{"spec.steps[1].verify[0].timeout: 10m0.000000001s: give a duration above 0 and at most 10m0s (default 10s)"}},
		{"retries negative", func(r *Release) { r.Steps[1].Verify[0].Retries = -1 },
			[]string{"spec.steps[1].verify[0].retries: -1: give 0 to 10"}},
		{"retries too many", func(r *Release) { r.Steps[1].Verify[0].Retries = 11 },
			[]string{"spec.steps[1].verify[0].retries: 11: give 0 to 10"}},
		{"window short", func(r *Release) { r.Analysis.Window = 999 * time.Millisecond },
			[]string{"spec.analysis.window: 999ms: give 1s to 10m0s"}},
		{"window long", func(r *Release) { r.Analysis.Window = 11 * time.Minute },
			[]string{"spec.analysis.window: 11m0s: give 1s to 10m0s"}},
		{"min requests", func(r *Release) { r.Analysis.MinRequests = MaxMinRequests + 1 },
			[]string{"spec.analysis.minRequests: 1000000001: give 0 (always judge) to 1000000000 responses"}},
		{"open zero", func(r *Release) { r.Analysis.Breaker.OpenP99Above, r.Analysis.Breaker.OpenErrorRate = 0, 0 }, []string{
			"spec.analysis.breaker.open.p99Above: 0s: give a duration of at least 1µs, such as 800ms",
			"spec.analysis.breaker.open.errorRateAtLeast: 0%: give a percentage above 0% and at most 100% in 0.01% steps, such as 3.5%",
		}},
		{"open p99 tiny", func(r *Release) { r.Analysis.Breaker.OpenP99Above = time.Nanosecond },
			[]string{"spec.analysis.breaker.open.p99Above: 1ns: give a duration of at least 1µs, such as 800ms"}},
		{"open p99 negative", func(r *Release) { r.Analysis.Breaker.OpenP99Above = -time.Second },
			[]string{"spec.analysis.breaker.open.p99Above: -1s: give a duration of at least 1µs, such as 800ms"}},
		{"open rate above 100", func(r *Release) { r.Analysis.Breaker.OpenErrorRate = 1.5 },
			[]string{"spec.analysis.breaker.open.errorRateAtLeast: 150%: give a percentage above 0% and at most 100% in 0.01% steps, such as 3.5%"}},
		{"open rate negative", func(r *Release) { r.Analysis.Breaker.OpenErrorRate = -0.01 },
			[]string{"spec.analysis.breaker.open.errorRateAtLeast: -1%: give a percentage above 0% and at most 100% in 0.01% steps, such as 3.5%"}},
		{"open rate too fine", func(r *Release) { r.Analysis.Breaker.OpenErrorRate = 0.03555 },
			[]string{"spec.analysis.breaker.open.errorRateAtLeast: 3.555%: give a percentage above 0% and at most 100% in 0.01% steps, such as 3.5%"}},
		{"open rate NaN", func(r *Release) { r.Analysis.Breaker.OpenErrorRate = math.NaN() },
			[]string{"spec.analysis.breaker.open.errorRateAtLeast: NaN%: give a percentage above 0% and at most 100% in 0.01% steps, such as 3.5%"}},
		{"close p99 above open", func(r *Release) { r.Analysis.Breaker.CloseP99AtMost = time.Second },
			[]string{"spec.analysis.breaker.close.p99AtMost: 1s: give a duration of at least 1µs and at most open.p99Above (800ms)"}},
		{"close p99 0", func(r *Release) { r.Analysis.Breaker.CloseP99AtMost = 0 },
			[]string{"spec.analysis.breaker.close.p99AtMost: 0s: give a duration of at least 1µs and at most open.p99Above (800ms)"}},
		{"close p99 not judged against a bad open", func(r *Release) {
			r.Analysis.Breaker.OpenP99Above, r.Analysis.Breaker.CloseP99AtMost = -1, time.Hour
		}, []string{"spec.analysis.breaker.open.p99Above: -1ns: give a duration of at least 1µs, such as 800ms"}},
		{"close rate at open", func(r *Release) { r.Analysis.Breaker.CloseErrorRate = 0.035 },
			[]string{"spec.analysis.breaker.close.errorRateAtMost: 3.5%: give a percentage in 0.01% steps below open.errorRateAtLeast (3.5%)"}},
		{"close rate negative", func(r *Release) { r.Analysis.Breaker.CloseErrorRate = -0.001 },
			[]string{"spec.analysis.breaker.close.errorRateAtMost: -0.1%: give a percentage in 0.01% steps below open.errorRateAtLeast (3.5%)"}},
		{"close rate too fine", func(r *Release) { r.Analysis.Breaker.CloseErrorRate = 0.00125 },
			[]string{"spec.analysis.breaker.close.errorRateAtMost: 0.125%: give a percentage in 0.01% steps below open.errorRateAtLeast (3.5%)"}},
		{"close rate not judged against a bad open", func(r *Release) {
			r.Analysis.Breaker.OpenErrorRate, r.Analysis.Breaker.CloseErrorRate = 2, 3
		}, []string{"spec.analysis.breaker.open.errorRateAtLeast: 200%: give a percentage above 0% and at most 100% in 0.01% steps, such as 3.5%"}},
		{"close windows 0", func(r *Release) { r.Analysis.Breaker.CloseWindows = 0 },
			[]string{"spec.analysis.breaker.close.windows: 0: give 1 to 100 healthy windows in a row (default 2)"}},
		{"close windows 101", func(r *Release) { r.Analysis.Breaker.CloseWindows = 101 },
			[]string{"spec.analysis.breaker.close.windows: 101: give 1 to 100 healthy windows in a row (default 2)"}},
		{"cool-down", func(r *Release) { r.Analysis.Breaker.CoolDown = 0 },
			[]string{"spec.analysis.breaker.coolDown: 0s: give at least 1s (default 1m0s)"}},
		{"on breach empty", func(r *Release) { r.OnBreach = "" },
			[]string{`spec.onBreach: "": use rollback (canary weight 0 at once) or pause`}},
		{"on breach unknown", func(r *Release) { r.OnBreach = "Rollback" },
			[]string{`spec.onBreach: "Rollback": use rollback (canary weight 0 at once) or pause`}},
		{"the zero release", func(r *Release) { *r = Release{} }, []string{
			`metadata.name: "" must be 1 to 63 characters of a-z, 0-9 and -`,
			"spec.service: is required: the name of the Service whose canary this release moves",
			"spec.steps: is required: give at least one step, such as - setWeight: 5",
			"spec.analysis.window: 0s: give 1s to 10m0s",
			"spec.analysis.breaker.open.p99Above: 0s: give a duration of at least 1µs, such as 800ms",
			"spec.analysis.breaker.open.errorRateAtLeast: 0%: give a percentage above 0% and at most 100% in 0.01% steps, such as 3.5%",
			"spec.analysis.breaker.close.windows: 0: give 1 to 100 healthy windows in a row (default 2)",
			"spec.analysis.breaker.coolDown: 0s: give at least 1s (default 1m0s)",
			`spec.onBreach: "": use rollback (canary weight 0 at once) or pause`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := valid()
			tt.change(&r)
			var got []string
			if err := r.Validate(); err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *service.FieldError
					if !errors.As(e, &fe) {
						t.Errorf("%v is a %T, not a *service.FieldError", e, e)
					}
					got = append(got, e.Error())
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(tt.want, "\n  "))
			}
		})
	}
}

func fillSteps(steps []Step) {
	for i := range steps {
		steps[i].SetRate = 1
	}
}

func TestParseRate(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want float64
	}{
		{"3.5%", 0.035}, {"3.5", 0.035}, {"0", 0}, {"0%", 0}, {"100%", 1}, {"100.00", 1},
		{"0.01%", 0.0001}, {"0.25%", 0.0025}, {" 1.2 % ", 0.012}, {".5", 0.005}, {"007", 0.07},
	} {
		got, err := ParseRate(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseRate(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{"", "%", "3.555%", "100.01%", "101", "-1%", "1e2", "5.", "3,5%", "3.5%%", "x", "0x10", "NaN", "Inf"} {
		if got, err := ParseRate(in); err == nil {
			t.Errorf("ParseRate(%q) = %v; want an error", in, got)
		}
	}
	_, err := ParseRate("3.555%")
	if want := `"3.555%" is not an error rate: use a percentage from 0% to 100% with at most two decimals, such as 3.5%`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

// TestRateRoundTrip: every rate ParseRate reads, FormatRate writes back
// to the same value, and that value validates as a whole 0.01 % step.
func TestRateRoundTrip(t *testing.T) {
	for bp := 0; bp <= 10000; bp++ {
		f := float64(bp) / 10000
		s := FormatRate(f)
		back, err := ParseRate(s)
		if err != nil || back != f {
			t.Fatalf("%d basis points: FormatRate %q, ParseRate %v, %v", bp, s, back, err)
		}
		if got, ok := rateBasisPoints(f); !ok || got != int64(bp) {
			t.Fatalf("%d basis points: rateBasisPoints %d, %v", bp, got, ok)
		}
		half := DefaultCloseErrorRate(f)
		if again, _ := ParseRate(FormatRate(half)); again != half || (bp > 0 && half >= f) {
			t.Fatalf("%d basis points: default close rate %v (%q) does not round-trip or is not below", bp, half, FormatRate(half))
		}
	}
	for _, tt := range []struct {
		f    float64
		want string
	}{{0.035, "3.5%"}, {0.012, "1.2%"}, {0.0001, "0.01%"}, {1, "100%"}, {0.03555, "3.555%"}, {1.5, "150%"}} {
		if got := FormatRate(tt.f); got != tt.want {
			t.Errorf("FormatRate(%v) = %q, want %q", tt.f, got, tt.want)
		}
	}
}

func TestDefaultCloseErrorRate(t *testing.T) {
	for _, tt := range []struct{ open, want float64 }{
		{0.035, 0.0175}, {0.0355, 0.0177}, {0.0001, 0}, {1, 0.5}, {0, 0}, {-1, 0}, {math.NaN(), 0},
	} {
		if got := DefaultCloseErrorRate(tt.open); got != tt.want {
			t.Errorf("DefaultCloseErrorRate(%v) = %v, want %v", tt.open, got, tt.want)
		}
	}
}

func TestValidJSONPath(t *testing.T) {
	for _, p := range []string{".", ".a", ".db.status", ".items[0].state", ".[2]", ".[0][1].a", "._x.y-z.A9", ".a[123456789]"} {
		if !ValidJSONPath(p) {
			t.Errorf("%q is refused", p)
		}
	}
	for _, p := range []string{"", "a", "db.status", "..", ".a.", ".a..b", ".a[", ".a[]", ".a[x]", ".a[-1]", ".a b",
		".1a", ".-a", ".a[0]b", ".a[1234567890]", ".a.[0]", "[0]"} {
		if ValidJSONPath(p) {
			t.Errorf("%q is accepted", p)
		}
	}
}

// TestClone: a clone shares nothing that can change.
func TestClone(t *testing.T) {
	r := valid()
	c := r.Clone()
	if !reflect.DeepEqual(c, r) {
		t.Fatalf("clone differs:\n%+v\n%+v", c, r)
	}
	*c.Steps[0].SetWeight = 1
	c.Steps[0].Pause.Duration = 1
	c.Steps[1].Verify[1].HTTP.ExpectJSON[".x"] = "y"
	c.Steps[1].Verify[1].HTTP.Path = "/x"
	c.Steps[1].Verify[2].Exec[0] = "rm"
	c.Steps[2].SetRate = 9
	if !reflect.DeepEqual(r, valid()) {
		t.Fatalf("changing the clone changed the release:\n%+v", r)
	}
}
