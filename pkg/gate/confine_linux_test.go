//go:build linux

package gate

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/release"
)

// nobody is the unprivileged user the confined tests run commands as.
func nobody(t *testing.T) *User {
	t.Helper()
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody on this host: %v", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &User{Name: "nobody", UID: uint32(uid), GID: uint32(gid)}
}

// TestNamedCommandConfined: a named command runs as its user, with no
// capabilities, no_new_privs, the limits, a clean environment, from /,
// and cannot write where only root may.
func TestNamedCommandConfined(t *testing.T) {
	testenv.RequirePrivileges(t)
	u := nobody(t)
	dir := t.TempDir() // 0700, root's
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	pwned := filepath.Join(dir, "pwned")
	t.Setenv("GRAYLANE_TEST_LEAK", "the agent's environment")
	script := `id -u; id -g; id -G; pwd; /usr/bin/env
grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status
grep -E '^Max (processes|address space)' /proc/self/limits
touch "$1" && echo "wrote $1"; exit 0`
	opts := Options{
		Commands: map[string]Command{"smoke": {Argv: []string{"/bin/sh", "-c", script, "sh", pwned}, User: u}},
		Env:      []string{"GRAYLANE_SERVICE=web", "GRAYLANE_RELEASE=web-v2"},
	}
	r := Run(context.Background(), release.Gate{Command: "smoke", Timeout: 10 * time.Second}, nil, opts)
	if !r.Pass {
		t.Fatalf("%+v", r)
	}
	lines := strings.Split(r.Output, "\n")
	id := strconv.Itoa(int(u.UID))
	gid := strconv.Itoa(int(u.GID))
	if len(lines) < 3 || lines[0] != id || lines[1] != gid || lines[2] != gid {
		t.Errorf("the command's uid, gid and groups are not %s, %s, %s alone:\n%s", id, gid, gid, r.Output)
	}
	for _, want := range []string{
		"\n/\n", // pwd
		CleanPath + "\n", "\nGRAYLANE_SERVICE=web\n", "\nGRAYLANE_RELEASE=web-v2\n",
		"CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n",
		"CapAmb:\t0000000000000000\nNoNewPrivs:\t1\n",
		"Max processes             64                   64",
		"Max address space         4294967296           4294967296",
		"Permission denied",
	} {
		if !strings.Contains(r.Output, want) {
			t.Errorf("the output lacks %q:\n%s", want, r.Output)
		}
	}
	for _, leak := range []string{"GRAYLANE_TEST_LEAK", "HOME=", "USER="} {
		if strings.Contains(r.Output, leak) {
			t.Errorf("the environment is not clean (%s):\n%s", leak, r.Output)
		}
	}
	if _, err := os.Stat(pwned); !os.IsNotExist(err) {
		t.Errorf("the command wrote %s as its unprivileged user: %v", pwned, err)
	}
}

// TestNamedCommandNeverRoot: a command whose user is root does not start.
func TestNamedCommandNeverRoot(t *testing.T) {
	t.Parallel()
	for _, u := range []User{{Name: "root"}, {Name: "wheel-group", UID: 1000, GID: 0}} {
		opts := Options{Commands: map[string]Command{"smoke": {Argv: []string{"/bin/true"}, User: &u}}}
		r := Run(context.Background(), release.Gate{Command: "smoke", Timeout: time.Second}, nil, opts)
		if r.Pass || !strings.HasPrefix(r.Detail, "will not start the command: user") || !strings.Contains(r.Detail, "never runs as root") {
			t.Errorf("%s: %+v", u.Name, r)
		}
	}
}

// TestNamedCommandUnknown: a gate naming a command this node does not
// have fails, saying so; a command's timeout caps the gate's.
func TestNamedCommandUnknown(t *testing.T) {
	t.Parallel()
	r := Run(context.Background(), release.Gate{Command: "nope", Timeout: time.Second}, nil, Options{})
	if r.Pass || r.Detail != `no command "nope" in this node's gates.commands: add it to the agent config of every node` {
		t.Errorf("%+v", r)
	}
	opts := Options{Commands: map[string]Command{"slow": {Argv: []string{"/bin/sleep", "5"}, Timeout: 200 * time.Millisecond}}}
	r = Run(context.Background(), release.Gate{Command: "slow", Timeout: time.Minute}, nil, opts)
	if r.Pass || r.Detail != "timed out after 200ms (the gate's timeout): killed" {
		t.Errorf("the command's timeout: %+v", r)
	}
}
