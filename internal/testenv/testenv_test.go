package testenv

import (
	"os"
	"testing"
)

func TestEffectiveCaps(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no procfs")
	}
	if _, err := effectiveCaps(); err != nil {
		t.Fatal(err)
	}
}

func TestInCI(t *testing.T) {
	for v, want := range map[string]bool{"true": true, "1": true, "": false, "false": false, "nonsense": false} {
		t.Setenv("CI", v)
		if got := inCI(); got != want {
			t.Errorf("CI=%q: inCI() = %v, want %v", v, got, want)
		}
	}
}

func TestRequirePrivileges(t *testing.T) {
	RequirePrivileges(t)
	if problem() != "" {
		t.Fatal("RequirePrivileges returned although there is a problem")
	}
}
