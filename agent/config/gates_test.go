package config

import (
	"strings"
	"testing"
	"time"
)

const gatesBase = `interfaces: [{name: eth0, role: client}]
gates:
  commands:
    - name: smoke
      argv: [/usr/local/bin/smoke, --fast]
      user: nobody
      timeout: 30s
`

func TestGatesConfig(t *testing.T) {
	c, err := Parse("agent.yaml", []byte(gatesBase))
	if err != nil {
		t.Fatal(err)
	}
	cmd := c.Gates.Commands[0]
	if cmd.Name != "smoke" || len(cmd.Argv) != 2 || cmd.TimeoutOrZero() != 30*time.Second {
		t.Fatalf("commands = %+v", c.Gates.Commands)
	}
	u, err := cmd.ResolveUser()
	if err != nil || u.UID == 0 || u.GID == 0 || u.Name != "nobody" {
		t.Errorf("user: %+v, %v", u, err)
	}
	if got := c.Gates.CommandNames(); len(got) != 1 || got[0] != "smoke" {
		t.Errorf("names = %v", got)
	}
	if c, err := Parse("agent.yaml", []byte("interfaces: [{name: eth0, role: client}]\n")); err != nil || len(c.Gates.Commands) != 0 {
		t.Errorf("no gates: %+v, %v", c, err)
	}
}

func TestGatesConfigErrors(t *testing.T) {
	for _, tc := range []struct{ from, to, want string }{
		{"user: nobody", "user: root", "agent.yaml:6: gates.commands[0].user: user \"root\" is root (uid 0, gid 0): gate commands run without root"},
		{"user: nobody", "user: \"0\"", "gates.commands[0].user: user \"0\" is root"},
		{"user: nobody", "user: graylane-no-such-user", "gates.commands[0].user: user \"graylane-no-such-user\" does not exist on this host"},
		{"      user: nobody\n", "", "gates.commands[0].user: is required"},
		{"name: smoke", "name: Smoke", "agent.yaml:4: gates.commands[0].name: \"Smoke\" must be 1 to 63 characters"},
		{"argv: [/usr/local/bin/smoke, --fast]", "argv: [smoke]", "gates.commands[0].argv[0]: \"smoke\" is not an absolute path"},
		{"argv: [/usr/local/bin/smoke, --fast]", "argv: []", "gates.commands[0].argv: is required"},
		{"timeout: 30s", "timeout: 30", "gates.commands[0].timeout: \"30\": give a duration from 1s to 10m0s"},
		{"timeout: 30s", "timeout: 1h", "gates.commands[0].timeout: \"1h\""},
		{"timeout: 30s", "timeout: 30s\n      shell: true", "gates.commands[0].shell: unknown field"},
		{"      timeout: 30s\n", "      timeout: 30s\n    - {name: smoke, argv: [/bin/true], user: nobody}\n", "gates.commands[1].name: \"smoke\" is also gates.commands[0]"},
	} {
		in := strings.Replace(gatesBase, tc.from, tc.to, 1)
		_, err := Parse("agent.yaml", []byte(in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v\nwant %q", tc.to, err, tc.want)
		}
	}
}
