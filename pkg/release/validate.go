package release

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

// Defaults of the fields a CanaryRelease leaves out.
const (
	DefaultWindow       = 60 * time.Second
	DefaultMinRequests  = 100
	DefaultCloseWindows = 2
	DefaultCoolDown     = 60 * time.Second
	DefaultOnBreach     = Rollback
)

// Limits of a release.
const (
	MaxSteps      = 100
	MaxGates      = 20
	MaxRetries    = 10
	MaxGateTime   = 10 * time.Minute
	MaxRate       = 10_000_000
	MinWindow     = time.Second
	MaxWindow     = 10 * time.Minute
	MinCoolDown   = time.Second
	MaxExpectJSON = 32
)

var jsonPathRE = regexp.MustCompile(`^\.$|^(\.[A-Za-z_][A-Za-z0-9_-]*(\[[0-9]+\])*)+$`)

// Validate checks a release on its own (that its service exists is the
// cluster's check). Every problem is a *service.FieldError whose Path is
// the manifest's field ("spec.steps[1].verify[0].http.path").
func (r *Release) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &service.FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	if !service.ValidName(r.Name) {
		bad("metadata.name", "%q must be 1 to 63 characters of a-z, 0-9 and -", r.Name)
	}
	switch {
	case r.Service == "":
		bad("spec.service", "is required: the name of the Service whose canary this release moves")
	case !service.ValidName(r.Service):
		bad("spec.service", "%q is not a service name (1 to 63 characters of a-z, 0-9 and -)", r.Service)
	}
	switch {
	case len(r.Steps) == 0:
		bad("spec.steps", "is empty: give at least one step, such as - setWeight: 5")
	case len(r.Steps) > MaxSteps:
		bad("spec.steps", "has %d steps, at most %d", len(r.Steps), MaxSteps)
	}
	for i, st := range r.Steps {
		at := fmt.Sprintf("spec.steps[%d]", i)
		switch {
		case st.SetWeight != nil && st.SetRate > 0:
			bad(at, "sets both setWeight and setRate: one step does one of them")
		case st.SetWeight == nil && st.SetRate == 0 && st.Pause == nil && len(st.Verify) == 0:
			bad(at, "does nothing: give setWeight, setRate, pause or verify")
		}
		if st.SetWeight != nil && *st.SetWeight > service.MaxWeight {
			bad(at+".setWeight", "%s is above 100%%", *st.SetWeight)
		}
		if st.SetRate > MaxRate {
			bad(at+".setRate", "%d new flows per second is above %d", st.SetRate, MaxRate)
		}
		if st.Pause != nil && st.Pause.Duration < 0 {
			bad(at+".pause.duration", "%v is negative", st.Pause.Duration)
		}
		if len(st.Verify) > MaxGates {
			bad(at+".verify", "has %d gates, at most %d", len(st.Verify), MaxGates)
		}
		for k, g := range st.Verify {
			validateGate(fmt.Sprintf("%s.verify[%d]", at, k), g, bad)
		}
	}
	a := r.Analysis
	if a.Window < MinWindow || a.Window > MaxWindow {
		bad("spec.analysis.window", "%v: give %v to %v", a.Window, MinWindow, MaxWindow)
	}
	b := a.Breaker
	if b.OpenP99Above <= 0 {
		bad("spec.analysis.breaker.open.p99Above", "is required: the P99 above which (with the error rate) the canary is pulled back, such as 800ms")
	}
	if b.OpenErrorRate <= 0 || b.OpenErrorRate > 1 {
		bad("spec.analysis.breaker.open.errorRateAtLeast", "is required: an error rate above 0%% and at most 100%%, such as 3.5%%")
	}
	// The close thresholds are judged against the open ones only when
	// those are right: one mistake, one message.
	if b.OpenP99Above > 0 && (b.CloseP99AtMost <= 0 || b.CloseP99AtMost > b.OpenP99Above) {
		bad("spec.analysis.breaker.close.p99AtMost", "%v must be positive and at most open.p99Above (%v)", b.CloseP99AtMost, b.OpenP99Above)
	}
	if b.OpenErrorRate > 0 && b.OpenErrorRate <= 1 && (b.CloseErrorRate < 0 || b.CloseErrorRate >= b.OpenErrorRate) {
		bad("spec.analysis.breaker.close.errorRateAtMost", "%s must be below open.errorRateAtLeast (%s)", FormatRate(b.CloseErrorRate), FormatRate(b.OpenErrorRate))
	}
	if b.CloseWindows < 1 || b.CloseWindows > 100 {
		bad("spec.analysis.breaker.close.windows", "%d: give 1 to 100 healthy windows", b.CloseWindows)
	}
	if b.CoolDown < MinCoolDown {
		bad("spec.analysis.breaker.coolDown", "%v: give at least %v", b.CoolDown, MinCoolDown)
	}
	if r.OnBreach != Rollback && r.OnBreach != PauseRelease {
		bad("spec.onBreach", "%q: use rollback or pause", r.OnBreach)
	}
	return errors.Join(errs...)
}

func validateGate(at string, g Gate, bad func(path, format string, args ...any)) {
	n := 0
	if g.TCP != nil {
		n++
	}
	if g.HTTP != nil {
		n++
	}
	if len(g.Exec) > 0 {
		n++
	}
	if n != 1 {
		bad(at, "give exactly one of tcp, http and exec (this gate has %d)", n)
	}
	if h := g.HTTP; h != nil {
		if !strings.HasPrefix(h.Path, "/") {
			bad(at+".http.path", "%q must start with /, such as /healthz", h.Path)
		}
		if h.ExpectStatus < 100 || h.ExpectStatus > 599 {
			bad(at+".http.expectStatus", "%d is not an HTTP status", h.ExpectStatus)
		}
		if len(h.ExpectJSON) > MaxExpectJSON {
			bad(at+".http.expectJSON", "has %d fields, at most %d", len(h.ExpectJSON), MaxExpectJSON)
		}
		for path := range h.ExpectJSON {
			if !jsonPathRE.MatchString(path) {
				bad(fmt.Sprintf("%s.http.expectJSON[%q]", at, path), "is not a JSON path such as .db.status or .items[0].state")
			}
		}
	}
	for i, arg := range g.Exec {
		if i == 0 && strings.TrimSpace(arg) == "" {
			bad(at+".exec[0]", "is empty: the first item is the command")
		}
	}
	if g.Timeout <= 0 || g.Timeout > MaxGateTime {
		bad(at+".timeout", "%v: give up to %v", g.Timeout, MaxGateTime)
	}
	if g.Retries < 0 || g.Retries > MaxRetries {
		bad(at+".retries", "%d: give 0 to %d", g.Retries, MaxRetries)
	}
}

// ParseRate reads an error rate written as a percentage: "3.5%" or "3.5"
// (percent either way), at most two decimals, 0 to 100 %. It returns a
// fraction (0.035).
func ParseRate(s string) (float64, error) {
	t := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(s), "%"))
	whole, frac, _ := strings.Cut(t, ".")
	if t == "" || whole == "" || len(frac) > 2 || strings.Trim(whole+frac, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a rate: use a percentage with at most two decimals, such as 3.5%%", s)
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v > 100 {
		return 0, fmt.Errorf("%q is not a rate from 0%% to 100%%", s)
	}
	return v / 100, nil
}

// FormatRate writes a fraction as ParseRate reads it ("3.5%").
func FormatRate(f float64) string {
	return strconv.FormatFloat(math.Round(f*10000)/100, 'f', -1, 64) + "%"
}
