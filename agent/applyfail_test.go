package agent

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/graylane/graylane/pkg/datapath"
)

// TestApplyFailures: a failure is new once (logged once), shows in the
// status and the metrics, and clears at the next apply that installs it.
func TestApplyFailures(t *testing.T) {
	var f applyFailures
	reg := prometheus.NewRegistry()
	reg.MustRegister(f.collector("n1"))
	if got := gather(t, reg); got != "graylane_apply_failed_services 0" {
		t.Fatalf("before any failure: %s", got)
	}
	p := &datapath.PartialError{Failed: map[string]error{"a": errors.New(`service "a": the kernel refused it: full`)}}
	if fresh := f.set(p); len(fresh) != 1 || fresh[0] != "a" {
		t.Fatalf("first failure: fresh %v, want [a]", fresh)
	}
	if fresh := f.set(p); len(fresh) != 0 {
		t.Fatalf("same failure again: fresh %v, want none (logged once)", fresh)
	}
	if got := gather(t, reg); got != "graylane_apply_failed{service=a} 1, graylane_apply_failed_services 1" {
		t.Fatalf("metrics of a failing service: %s", got)
	}
	if got := notApplied(f.of("a"), "10%"); !strings.Contains(got, "weight 10%") || !strings.Contains(got, "the kernel refused it") {
		t.Errorf("status of a failing service in the kernel: %q", got)
	}
	if got := notApplied(f.of("a"), ""); !strings.Contains(got, "does not hold it") {
		t.Errorf("status of a failing service not in the kernel: %q", got)
	}
	if got := notApplied(f.of("b"), "0%"); got != "" {
		t.Errorf("status of an applied service: %q", got)
	}
	f.set(nil)
	if f.of("a") != "" || gather(t, reg) != "graylane_apply_failed_services 0" {
		t.Error("a failure stayed after an apply that installed every service")
	}
}

// gather renders reg's series as "name{service=x} value, ..." (the node
// label left out).
func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			s := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() == "service" {
					s += "{service=" + l.GetValue() + "}"
				}
			}
			out = append(out, fmt.Sprintf("%s %g", s, m.GetGauge().GetValue()))
		}
	}
	return strings.Join(out, ", ")
}
