package datapath

// What the agent decides for a service at run time, beside its manifest,
// and gives Apply together with the services (ApplyOption): the latency
// thresholds of a running release's breaker, and this node's share of the
// release's rate cap.

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/graylane/graylane/bpf"
)

// MaxRate bounds a rate cap (new canary flows per second on one node).
const MaxRate = 10_000_000

// MaxThresholds is how many latency thresholds a service can have.
const MaxThresholds = int(bpf.SteerLimitsMAX_THRESHOLDS)

// An ApplyOption gives Apply run-time settings to install with the
// services, by service name. Apply installs exactly what its options say:
// a setting no option names is removed, and names of services not applied
// are ignored.
type ApplyOption func(*settings)

// settings are the run-time settings of one Apply, by service name.
type settings struct {
	thresholds map[string][]time.Duration
	rates      map[string]uint32
}

// WithThresholds gives services latency thresholds (at most MaxThresholds
// a service, together with its manifest's) whose exceedances the programs
// count for the service's responses, so that "P99 above T" is decided
// exactly: slow(T) / responses > 1 %. The slow counters keep counting
// across a change: readers see the thresholds with the counts and restart
// their windows when they change.
func WithThresholds(byService map[string][]time.Duration) ApplyOption {
	return func(s *settings) { s.thresholds = byService }
}

// WithRates caps services' new canary flows per second on this node (0:
// no cap): the weight still decides which new flows are eligible for the
// canary; a token bucket admits at most that many of them a second (bursts
// of a tenth of that), the others go to stable. Pins are exempt.
func WithRates(perSecByService map[string]uint32) ApplyOption {
	return func(s *settings) { s.rates = perSecByService }
}

// settingsOf collects opts and checks each setting by itself (the plan
// checks a service's thresholds together with its manifest's).
func settingsOf(opts []ApplyOption) (settings, error) {
	var s settings
	for _, o := range opts {
		o(&s)
	}
	for _, name := range slices.Sorted(maps.Keys(s.thresholds)) {
		thresholds := s.thresholds[name]
		if len(thresholds) > MaxThresholds {
			return settings{}, fmt.Errorf("service %q: %d latency thresholds, at most %d", name, len(thresholds), MaxThresholds)
		}
		for _, th := range thresholds {
			if th <= 0 {
				return settings{}, fmt.Errorf("service %q: latency threshold %v must be positive", name, th)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.rates)) {
		if perSec := s.rates[name]; perSec > MaxRate {
			return settings{}, fmt.Errorf("service %q: rate %d flows/s is above %d", name, perSec, MaxRate)
		}
	}
	return s, nil
}

// mergeThresholds joins the thresholds a service's manifest names with
// those given at run time (WithThresholds), without repeats.
func mergeThresholds(a, b []time.Duration) ([]time.Duration, error) {
	out := slices.Clone(a)
	for _, th := range b {
		if !slices.Contains(out, th) {
			out = append(out, th)
		}
	}
	if len(out) > MaxThresholds {
		return nil, fmt.Errorf("%d latency thresholds (%v) from the manifest and the releases; the data path counts at most %d", len(out), out, MaxThresholds)
	}
	return out, nil
}
