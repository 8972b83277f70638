package l7splice

import (
	"slices"
	"testing"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
)

// TestL7SourceReturnsRouted: ReturnsRouted sees what RouteReturns adds,
// and nothing once UnrouteReturns removed it (twice: no error).
func TestL7SourceReturnsRouted(t *testing.T) {
	testenv.RequirePrivileges(t)
	lab := netlab.NewT(t, netlab.Config{Stable: -1, Canary: -1})
	var got []bool
	err := lab.Gateway.Do(func() error {
		for _, step := range []func() error{nil, RouteReturns, UnrouteReturns, UnrouteReturns} {
			if step != nil {
				if err := step(); err != nil {
					return err
				}
			}
			there, err := ReturnsRouted()
			if err != nil {
				return err
			}
			got = append(got, there)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("routed: at first, after RouteReturns, after UnrouteReturns, after it again: %v", got)
	if want := []bool{false, true, false, false}; !slices.Equal(got, want) {
		t.Errorf("ReturnsRouted: %v, want %v", got, want)
	}
}
