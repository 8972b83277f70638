package release

import (
	"net/netip"
	"strings"
	"testing"
)

func TestTenantProblems(t *testing.T) {
	known := func(name string) bool { return name == "smoke" }
	node := netip.MustParseAddr("10.0.0.1")
	rules := TenantRules{Command: known, Node: func(a netip.Addr) bool { return a == node }}
	own := []netip.AddrPort{netip.MustParseAddrPort("10.2.0.11:8080")}
	one := func(g Gate) *Release { return &Release{Steps: []Step{{Verify: []Gate{g}}}} }
	for _, tc := range []struct {
		name   string
		gate   Gate
		canary []netip.AddrPort
		want   string // "" for none
	}{
		{"a named command", Gate{Command: "smoke"}, own, ""},
		{"an http gate to its own canary", Gate{HTTP: &HTTPGate{Path: "/healthz"}}, own, ""},
		{"a tcp gate to its own canary", Gate{TCP: &TCPGate{}}, own, ""},
		{"the argv form", Gate{Exec: []string{"sh", "-c", "touch /tmp/pwned"}}, own,
			"spec.steps[0].verify[0].exec: a tenant token may not run a command line on the leader"},
		{"an unknown command", Gate{Command: "nope"}, own, `spec.steps[0].verify[0].command: "nope" is not a command of the agent's gates.commands`},
		{"metadata", Gate{TCP: &TCPGate{}}, []netip.AddrPort{netip.MustParseAddrPort("169.254.169.254:80")},
			"dials the canary backend 169.254.169.254:80, a link-local address"},
		{"loopback", Gate{HTTP: &HTTPGate{Path: "/"}}, []netip.AddrPort{own[0], netip.MustParseAddrPort("127.0.0.1:7443")},
			"dials the canary backend 127.0.0.1:7443, a loopback address"},
		{"IPv4-mapped loopback", Gate{TCP: &TCPGate{}}, []netip.AddrPort{netip.MustParseAddrPort("[::ffff:127.0.0.1]:22")}, "a loopback address"},
		{"a node", Gate{Shadow: &ShadowGate{From: ShadowFromCapture}}, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.1:7071")},
			"dials the canary backend 10.0.0.1:7071, an address of a Graylane node"},
		{"IPv6 metadata", Gate{TCP: &TCPGate{}}, []netip.AddrPort{netip.MustParseAddrPort("[fd00:ec2::254]:80")}, "a cloud metadata address"},
		{"unspecified", Gate{TCP: &TCPGate{}}, []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:22")}, "an unspecified address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := TenantProblems(one(tc.gate), tc.canary, rules)
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("refused: %v", got[0])
			case tc.want == "":
			case len(got) != 1 || !strings.Contains(got[0].Error(), tc.want):
				t.Errorf("got %v, want one problem with %q", got, tc.want)
			}
		})
	}
	// No allowlist: no command is known.
	if got := TenantProblems(one(Gate{Command: "smoke"}), own, TenantRules{}); len(got) != 1 {
		t.Errorf("without an allowlist: %v", got)
	}
}

func TestValidateCommand(t *testing.T) {
	r := valid()
	r.Steps[0].Verify = []Gate{{Command: "smoke", Timeout: DefaultGateTimeout}}
	if err := r.Validate(); err != nil {
		t.Errorf("a command gate: %v", err)
	}
	r.Steps[0].Verify = []Gate{{Command: "../bin/sh", Timeout: DefaultGateTimeout}}
	if err := r.Validate(); err == nil || !strings.Contains(err.Error(), `spec.steps[0].verify[0].command: "../bin/sh" is not a command name`) {
		t.Errorf("a bad name: %v", err)
	}
}
