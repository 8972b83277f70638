package shadow

import (
	"fmt"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/api"
)

// TestTargets: --to canary and stable are the service's backends; a pool
// without backends is an error that says what to give instead.
func TestTargets(t *testing.T) {
	svc := api.Service{Name: "auth", Stable: []api.Backend{{Address: "10.1.0.11:8080"}, {Address: "[fd00::1]:80"}}}
	for to, want := range map[string]string{
		"stable":         "[10.1.0.11:8080 [fd00::1]:80]",
		"canary":         "service auth has no canary backends: give --to stable, or --to ADDR:PORT",
		"127.0.0.1:9000": "[127.0.0.1:9000]",
	} {
		got, err := targets(svc, to)
		text := fmt.Sprint(got)
		if err != nil {
			text = err.Error()
		}
		if text != want {
			t.Errorf("--to %s: %s, want %s", to, text, want)
		}
	}
	svc.Canary = []api.Backend{{Address: "10.2.0.11"}}
	if _, err := targets(svc, "canary"); err == nil || !strings.Contains(err.Error(), `canary backend "10.2.0.11"`) {
		t.Errorf("a backend without a port: %v", err)
	}
}
