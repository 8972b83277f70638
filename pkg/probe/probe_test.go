package probe

import (
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
)

// TestThisKernel: this kernel (the project's CI kernel, 6.x) has every
// feature; a probe that reports one missing here is broken, not the
// kernel.
func TestThisKernel(t *testing.T) {
	testenv.RequirePrivileges(t)
	for _, r := range Check(nil) {
		if !r.Present {
			t.Errorf("%s reported missing on this kernel: %v", r.Name, r.Err)
		}
	}
}

// TestDisabled: a feature turned off is reported so; a missing must-have
// is an error naming it and the minimum kernel; a missing feature with a
// fallback is not.
func TestDisabled(t *testing.T) {
	testenv.RequirePrivileges(t)
	results := Check(Disabled("tcx, spin_lock"))
	if Has(results, "tcx") || Has(results, "spin_lock") || !Has(results, "xdp") {
		t.Fatalf("disabled features: %+v", results)
	}
	err := Missing(results)
	if err == nil || !strings.Contains(err.Error(), "helper bpf_spin_lock") || strings.Contains(err.Error(), "TCX") ||
		!strings.Contains(err.Error(), "Linux "+MinKernel) {
		t.Fatalf("missing: %v", err)
	}
	if err := Missing(Check(Disabled("tcx,btf"))); err != nil {
		t.Fatalf("only features with a fallback off: %v", err)
	}
	keys := map[string]bool{}
	for _, f := range Features {
		if keys[f.Key] || f.Key == "" {
			t.Errorf("feature %q: key %q empty or not unique", f.Name, f.Key)
		}
		keys[f.Key] = true
	}
}
