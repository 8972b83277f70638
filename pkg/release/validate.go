package release

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

// Defaults of the fields a CanaryRelease leaves out. The manifest reader
// fills them in; Validate expects them filled.
const (
	DefaultWindow       = 60 * time.Second
	DefaultMinRequests  = 100
	DefaultCloseWindows = 2
	DefaultCoolDown     = 60 * time.Second
	DefaultOnBreach     = Rollback
	DefaultExpectStatus = 200
)

// Limits of a release.
const (
	MaxSteps       = 100
	MaxGates       = 20
	MaxRetries     = 10
	MaxGateTime    = 10 * time.Minute
	MaxRate        = 10_000_000
	MinWindow      = time.Second
	MaxWindow      = 10 * time.Minute
	MaxMinRequests = 1_000_000_000
	MaxCloseWin    = 100
	MinCoolDown    = time.Second
	MaxExpectJSON  = 32
	// MinLatency is the smallest P99 threshold: the kernel counts
	// responses slower than it, as it does a service's latencyThresholds.
	MinLatency = time.Microsecond
)

// DefaultCloseErrorRate is the error rate at most which a window counts
// as healthy when the manifest gives no breaker.close.errorRateAtMost: half
// the open rate, rounded down to the 0.01 % steps rates are written in (so
// 3.55 % gives 1.77 %, 0.01 % gives 0 %).
func DefaultCloseErrorRate(open float64) float64 {
	bp, ok := rateBasisPoints(open)
	if !ok || bp < 0 {
		return 0
	}
	return float64(bp/2) / 10000
}

// Validate checks a release on its own (that its service exists is the
// cluster's check). Every problem is a *service.FieldError whose Path is
// the manifest's field ("spec.steps[1].verify[0].http.path"); they are
// joined, in the order of the manifest's fields.
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
		bad("spec.steps", "is required: give at least one step, such as - setWeight: 5")
	case len(r.Steps) > MaxSteps:
		bad("spec.steps", "has %d steps, at most %d", len(r.Steps), MaxSteps)
	}
	for i, st := range r.Steps {
		validateStep(fmt.Sprintf("spec.steps[%d]", i), st, bad)
	}
	a := r.Analysis
	if a.Window < MinWindow || a.Window > MaxWindow {
		bad("spec.analysis.window", "%v: give %v to %v", a.Window, MinWindow, MaxWindow)
	}
	if a.MinRequests > MaxMinRequests {
		bad("spec.analysis.minRequests", "%d: give 0 (always judge) to %d responses", a.MinRequests, MaxMinRequests)
	}
	validateBreaker(a.Breaker, bad)
	if r.OnBreach != Rollback && r.OnBreach != PauseRelease {
		bad("spec.onBreach", "%q: use rollback (canary weight 0 at once) or pause", r.OnBreach)
	}
	return errors.Join(errs...)
}

type reporter func(path, format string, args ...any)

// validateStep checks one step. A step sets a weight or a rate, or
// neither: a step of only a pause (hold, then go on) or only gates
// (check the current weight before going on) is allowed.
func validateStep(at string, st Step, bad reporter) {
	switch {
	case st.SetWeight != nil && st.SetRate > 0:
		bad(at, "sets both setWeight and setRate: give one of them per step (split it into two steps)")
	case st.SetWeight == nil && st.SetRate == 0 && st.Pause == nil && len(st.Verify) == 0:
		bad(at, "does nothing: give setWeight, setRate, pause or verify")
	}
	if st.SetWeight != nil && *st.SetWeight > service.MaxWeight {
		bad(at+".setWeight", "%s is above 100%%", *st.SetWeight)
	}
	if st.SetRate > MaxRate {
		bad(at+".setRate", "%d: give new canary flows per second, a whole number from 1 to %d", st.SetRate, MaxRate)
	}
	if st.Pause != nil && st.Pause.Duration < 0 {
		bad(at+".pause.duration", "%v is negative: give a duration such as 5m, or none to wait for rollout resume", st.Pause.Duration)
	}
	if len(st.Verify) > MaxGates {
		bad(at+".verify", "has %d gates, at most %d", len(st.Verify), MaxGates)
	}
	for k, g := range st.Verify {
		validateGate(fmt.Sprintf("%s.verify[%d]", at, k), g, bad)
	}
}

func validateGate(at string, g Gate, bad reporter) {
	var kinds []string
	if g.TCP != nil {
		kinds = append(kinds, "tcp")
	}
	if g.HTTP != nil {
		kinds = append(kinds, "http")
	}
	if g.Command != "" {
		kinds = append(kinds, "command")
	}
	if len(g.Exec) > 0 {
		kinds = append(kinds, "exec")
	}
	if g.Shadow != nil {
		kinds = append(kinds, "shadow")
		validateShadow(at, *g.Shadow, g.Timeout, bad)
	}
	switch len(kinds) {
	case 0:
		bad(at, "checks nothing: give one of tcp: {}, http: {path: /healthz}, exec: [command, args...] or shadow: {from: capture}")
	case 1:
	default:
		bad(at, "gives %s: one gate does one check (make it %d gates)", strings.Join(kinds, " and "), len(kinds))
	}
	if h := g.HTTP; h != nil {
		switch {
		case h.Path == "":
			bad(at+".http.path", "is required: the path (and query) to GET, such as /healthz")
		case !validRequestPath(h.Path):
			bad(at+".http.path", "%q must start with / and hold no spaces, control characters or #, such as /healthz?full=1", h.Path)
		}
		if h.ExpectStatus < 100 || h.ExpectStatus > 599 {
			bad(at+".http.expectStatus", "%d is not an HTTP status: give 100 to 599 (default %d)", h.ExpectStatus, DefaultExpectStatus)
		}
		if len(h.ExpectJSON) > MaxExpectJSON {
			bad(at+".http.expectJSON", "has %d fields, at most %d", len(h.ExpectJSON), MaxExpectJSON)
		}
		for _, path := range slices.Sorted(maps.Keys(h.ExpectJSON)) { // a stable order of messages
			if !ValidJSONPath(path) {
				bad(fmt.Sprintf("%s.http.expectJSON[%q]", at, path), "is not a JSON path: use one such as .db.status or .items[0].state")
			}
		}
	}
	if g.Command != "" && !ValidCommandName(g.Command) {
		bad(at+".command", "%q is not a command name: give the name of one of the agent's gates.commands (1 to 63 characters of a-z, 0-9 and -)", g.Command)
	}
	if len(g.Exec) > 0 && strings.TrimSpace(g.Exec[0]) == "" {
		bad(at+".exec[0]", "is empty: the first item is the command to run")
	}
	if g.Timeout <= 0 || g.Timeout > MaxGateTime {
		bad(at+".timeout", "%v: give a duration above 0 and at most %v (default %v)", g.Timeout, MaxGateTime, DefaultGateTimeout)
	}
	if g.Retries < 0 || g.Retries > MaxRetries {
		bad(at+".retries", "%d: give 0 to %d", g.Retries, MaxRetries)
	}
}

// Bounds of a shadow gate's capture.
const MaxShadowDuration = 5 * time.Minute

// validateShadow checks the shadow gate of the gate at at; its capture and replay must fit in
// the gate's timeout.
func validateShadow(at string, s ShadowGate, timeout time.Duration, bad reporter) {
	switch {
	case s.From == "":
		bad(at+".shadow.from", "is required: capture, or the name of a pcapng file in the agent's captures directory")
	case s.From != ShadowFromCapture && !validCaptureFile(s.From):
		bad(at+".shadow.from", "%q: give capture, or a file name (letters, digits, . _ -) ending .pcapng or .pcap, in the agent's captures directory", s.From)
	}
	if s.MaxDiffering > service.MaxWeight {
		bad(at+".shadow.maxDiffering", "%s is above 100%%", s.MaxDiffering)
	}
	if s.From == ShadowFromCapture {
		if s.Duration <= 0 || s.Duration > MaxShadowDuration {
			bad(at+".shadow.duration", "%v: give how long to capture, above 0 and at most %v (default %v)", s.Duration, MaxShadowDuration, DefaultShadowDuration)
		} else if timeout <= s.Duration {
			bad(at+".timeout", "%v leaves no time to replay after the %v capture: give more (at least twice the duration)", timeout, s.Duration)
		}
		if s.Percent == 0 || s.Percent > service.MaxWeight {
			bad(at+".shadow.percent", "%s: give the share of new flows to capture, 0.01%% to 100%% (default %s)", s.Percent, DefaultShadowPercent)
		}
	}
}

// validCaptureFile: a plain file name, no directory, of a capture.
func validCaptureFile(name string) bool {
	if len(name) > 128 || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".pcapng") || strings.HasSuffix(name, ".pcap")) {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

func validateBreaker(b Breaker, bad reporter) {
	const open, close = "spec.analysis.breaker.open", "spec.analysis.breaker.close"
	// Both open thresholds are required; the manifest reader says so
	// when one is left out, this says what a wrong one should be.
	okP99 := b.OpenP99Above >= MinLatency
	if !okP99 {
		bad(open+".p99Above", "%v: give a duration of at least %v, such as 800ms", b.OpenP99Above, MinLatency)
	}
	_, exact := rateBasisPoints(b.OpenErrorRate)
	okRate := b.OpenErrorRate > 0 && b.OpenErrorRate <= 1 && exact
	if !okRate {
		bad(open+".errorRateAtLeast", "%s: give a percentage above 0%% and at most 100%% in 0.01%% steps, such as 3.5%%", FormatRate(b.OpenErrorRate))
	}
	// The close thresholds are judged against the open ones only when
	// those are right: one mistake, one message.
	if okP99 && (b.CloseP99AtMost < MinLatency || b.CloseP99AtMost > b.OpenP99Above) {
		bad(close+".p99AtMost", "%v: give a duration of at least %v and at most open.p99Above (%v)", b.CloseP99AtMost, MinLatency, b.OpenP99Above)
	}
	if _, exact := rateBasisPoints(b.CloseErrorRate); okRate && (b.CloseErrorRate < 0 || b.CloseErrorRate >= b.OpenErrorRate || !exact) {
		bad(close+".errorRateAtMost", "%s: give a percentage in 0.01%% steps below open.errorRateAtLeast (%s)", FormatRate(b.CloseErrorRate), FormatRate(b.OpenErrorRate))
	}
	if b.CloseWindows < 1 || b.CloseWindows > MaxCloseWin {
		bad(close+".windows", "%d: give 1 to %d healthy windows in a row (default %d)", b.CloseWindows, MaxCloseWin, DefaultCloseWindows)
	}
	if b.CoolDown < MinCoolDown {
		bad("spec.analysis.breaker.coolDown", "%v: give at least %v (default %v)", b.CoolDown, MinCoolDown, DefaultCoolDown)
	}
}

// ValidJSONPath reports whether p is a path into a JSON document as an
// http gate's expectJSON names it: "." (the whole body), then field names
// (a letter or _, then letters, digits, _ and -) separated by dots, each
// optionally followed by array indexes: ".db.status", ".items[0].state",
// ".[2]".
func ValidJSONPath(p string) bool {
	_, err := ParseJSONPath(p)
	return err == nil
}

// ErrBadJSONPath is wrapped by ParseJSONPath's errors.
var ErrBadJSONPath = errors.New("not a JSON path")

// maxIndexDigits is the longest array index a path may write.
const maxIndexDigits = 9

// PathStep is one move into a JSON document: a field of an object or an
// element of an array. End is where the step ends in the path, so
// path[:End] names the value it reaches.
type PathStep struct {
	Key   string
	Index int // -1: a field
	End   int
}

// ParseJSONPath reads a path of expectJSON: "." alone
// (the whole document), or field names (a letter or _, then letters,
// digits, _ and -) after dots, each optionally followed by array indexes
// in brackets; the first field name may be left out (".[2]").
func ParseJSONPath(path string) ([]PathStep, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s (write one such as .db.status or .items[0].state)", ErrBadJSONPath, path, fmt.Sprintf(format, args...))
	}
	if !strings.HasPrefix(path, ".") {
		return nil, bad("it starts with a dot")
	}
	var steps []PathStep
	i := 1
	for first := true; ; first = false {
		n := fieldLen(path[i:])
		if n == 0 && !first {
			return nil, bad("a field name (a letter or _, then letters, digits, _ or -) must follow %q", path[:i])
		}
		if n > 0 {
			steps = append(steps, PathStep{Key: path[i : i+n], Index: -1, End: i + n})
			i += n
		}
		for i < len(path) && path[i] == '[' {
			end := strings.IndexByte(path[i:], ']')
			if end < 0 {
				return nil, bad("the [ after %q is not closed", path[:i])
			}
			digits := path[i+1 : i+end]
			if digits == "" || len(digits) > maxIndexDigits || strings.Trim(digits, "0123456789") != "" {
				return nil, bad("[%s] after %q is not an array index (0 to %s)", digits, path[:i], strings.Repeat("9", maxIndexDigits))
			}
			idx, _ := strconv.Atoi(digits)
			i += end + 1
			steps = append(steps, PathStep{Index: idx, End: i})
		}
		if i == len(path) {
			return steps, nil
		}
		if path[i] != '.' {
			return nil, bad("%q follows %q where a dot or [ belongs", path[i:], path[:i])
		}
		i++
	}
}

// fieldLen is the length of the field name at the start of s.
func fieldLen(s string) int {
	for i, c := range []byte(s) {
		switch {
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && (c == '-' || '0' <= c && c <= '9'):
		default:
			return i
		}
	}
	return len(s)
}

// validRequestPath reports whether p can follow "http://host:port" in a
// request: an absolute path with an optional query, nothing that would
// end or split the URL.
func validRequestPath(p string) bool {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return false
	}
	for _, c := range []byte(p) {
		if c <= ' ' || c == 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// ParseRate reads an error rate written as a percentage, with the
// spelling of a weight (service.ParseWeight): "3.5%" or "3.5" (percent
// either way), "0.25%", at most two decimals, 0 % to 100 %. It returns a
// fraction: 0.035 for "3.5%".
func ParseRate(s string) (float64, error) {
	w, err := service.ParseWeight(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not an error rate: use a percentage from 0%% to 100%% with at most two decimals, such as 3.5%%", s)
	}
	return float64(w) / 10000, nil
}

// FormatRate writes a fraction as ParseRate reads it ("3.5%"). A rate
// that is not a whole number of 0.01 % steps is written with more
// decimals, which ParseRate refuses (Validate refuses such a rate too).
func FormatRate(f float64) string {
	if bp, ok := rateBasisPoints(f); ok && bp >= 0 && bp <= int64(service.MaxWeight) {
		return service.Weight(bp).String()
	}
	return strconv.FormatFloat(f*100, 'g', 10, 64) + "%"
}

// rateBasisPoints returns f in 0.01 % steps, and whether f is (to a
// rounding error) a whole number of them, as every rate ParseRate
// returns is.
func rateBasisPoints(f float64) (int64, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e6 {
		return 0, false
	}
	x := f * 10000
	bp := math.Round(x)
	return int64(bp), math.Abs(x-bp) < 1e-6
}
