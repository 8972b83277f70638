package manifest

import (
	"reflect"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/release"
)

const commandRelease = `apiVersion: graylane.io/v1
kind: CanaryRelease
metadata: {name: web-v2}
spec:
  service: web
  steps:
    - setWeight: 5
      verify:
        - command: smoke
          timeout: 30s
        - exec: [/usr/bin/true]
  analysis:
    breaker:
      open: {p99Above: 800ms, errorRateAtLeast: 3.5%}
`

// TestCommandGate: command: NAME names a command of the agent's allowlist;
// MarshalAll writes it back as it was read.
func TestCommandGate(t *testing.T) {
	set, err := ParseAll("cmd.yaml", []byte(commandRelease))
	if err != nil {
		t.Fatal(err)
	}
	gates := set.Releases[0].Steps[0].Verify
	if len(gates) != 2 || gates[0].Command != "smoke" || gates[0].Exec != nil || !reflect.DeepEqual(gates[1].Exec, []string{"/usr/bin/true"}) {
		t.Fatalf("gates = %+v", gates)
	}
	data := roundTrip(t, set)
	if !strings.Contains(string(data), "- command: smoke\n") {
		t.Errorf("MarshalAll wrote\n%s", data)
	}
}

func TestCommandGateErrors(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"command: smoke", "command:", "spec.steps[0].verify[0].command: is empty: give the name of a command of the agent's gates.commands"},
		{"command: smoke", "command: Smoke!", `spec.steps[0].verify[0].command: "Smoke!" is not a command name`},
		{"command: smoke", "command: [a, b]", "spec.steps[0].verify[0].command: must be a single value"},
		{"- command: smoke", "- command: smoke\n          exec: [/bin/true]", "spec.steps[0].verify[0]: gives command and exec: one gate does one check"},
	} {
		_, err := ParseAll("cmd.yaml", []byte(strings.Replace(commandRelease, tc.from, tc.to, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want %q", tc.to, err, tc.want)
		}
		if err != nil && strings.Count(err.Error(), "\n") > 0 {
			t.Errorf("%s: one mistake, one message: %v", tc.to, err)
		}
	}
}

// TestCommandGateClone: a release's clone keeps its command gates.
func TestCommandGateClone(t *testing.T) {
	r := release.Release{Steps: []release.Step{{Verify: []release.Gate{{Command: "smoke"}}}}}
	if c := r.Clone(); c.Steps[0].Verify[0].Command != "smoke" {
		t.Errorf("clone = %+v", c)
	}
}
