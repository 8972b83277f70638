package config

import (
	"fmt"
	"os/user"
	"path/filepath"
	"strconv"
	"time"
)

// Gates configures the verification gates this node runs as leader.
type Gates struct {
	// Commands is the allowlist of commands a release's exec gate may
	// name (command: NAME). Give every node the same list: any of them
	// may lead.
	Commands []GateCommand `yaml:"commands"`
}

// GateCommand is a command of the allowlist.
type GateCommand struct {
	// Name is what a release writes (command: smoke).
	Name string `yaml:"name"`
	// Argv is the program, an absolute path, and its arguments; no shell.
	Argv []string `yaml:"argv"`
	// User is the unprivileged user it runs as (a name or a uid): it
	// must exist, and must not be root.
	User string `yaml:"user"`
	// Timeout, a Go duration such as "30s", caps the timeout of the gates
	// that name it ("": the gate's own).
	Timeout string `yaml:"timeout"`
}

// Bounds of a gate command's timeout.
const (
	MinGateTimeout = time.Second
	MaxGateTimeout = 10 * time.Minute
)

// lookupUser finds a user by name or uid (os/user; tests replace it).
var lookupUser = func(name string) (*user.User, error) {
	if _, err := strconv.ParseUint(name, 10, 32); err == nil {
		return user.LookupId(name)
	}
	return user.Lookup(name)
}

// GateUser is the uid and gid a gate command runs as.
type GateUser struct {
	Name     string
	UID, GID uint32
}

// ResolveUser looks up c.User on this host. It fails when the user does
// not exist or is root (uid 0 or gid 0), saying what to do.
func (c *GateCommand) ResolveUser() (GateUser, error) {
	u, err := lookupUser(c.User)
	if err != nil {
		return GateUser{}, fmt.Errorf("user %q does not exist on this host (%v): create it, such as useradd --system --no-create-home --shell /usr/sbin/nologin %s, or name another unprivileged user", c.User, err, c.User)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	switch {
	case err1 != nil || err2 != nil:
		return GateUser{}, fmt.Errorf("user %q has uid %q and gid %q: not numbers", c.User, u.Uid, u.Gid)
	case uid == 0 || gid == 0:
		return GateUser{}, fmt.Errorf("user %q is root (uid %d, gid %d): gate commands run without root, name an unprivileged user such as graylane-gate", c.User, uid, gid)
	}
	return GateUser{Name: u.Username, UID: uint32(uid), GID: uint32(gid)}, nil
}

// TimeoutOrZero is Timeout parsed (0: none). Validate has checked it.
func (c *GateCommand) TimeoutOrZero() time.Duration {
	d, _ := time.ParseDuration(c.Timeout)
	return d
}

// CommandNames returns the names of the allowlist's commands.
func (g *Gates) CommandNames() []string {
	names := make([]string, 0, len(g.Commands))
	for _, c := range g.Commands {
		names = append(names, c.Name)
	}
	return names
}

// validateGates checks the allowlist: unique names, absolute programs,
// users that exist here and are not root, timeouts in bounds.
func (c *Config) validateGates(bad reportFunc) {
	seen := make(map[string]int, len(c.Gates.Commands))
	for i, cmd := range c.Gates.Commands {
		at := fmt.Sprintf("gates.commands[%d]", i)
		if !tokenNameRE.MatchString(cmd.Name) {
			bad(at+".name", "%q must be 1 to 63 characters of a-z, 0-9 and - (what a release writes: command: NAME)", cmd.Name)
		} else if j, dup := seen[cmd.Name]; dup {
			bad(at+".name", "%q is also gates.commands[%d]: give each command its own name", cmd.Name, j)
		} else {
			seen[cmd.Name] = i
		}
		switch {
		case len(cmd.Argv) == 0:
			bad(at+".argv", "is required: the program and its arguments, such as [/usr/local/bin/smoke, --fast]")
		case !filepath.IsAbs(cmd.Argv[0]):
			bad(at+".argv[0]", "%q is not an absolute path: commands run with PATH=/usr/bin:/bin only, so name the program by its full path", cmd.Argv[0])
		}
		if cmd.User == "" {
			bad(at+".user", "is required: the unprivileged user the command runs as, such as graylane-gate")
		} else if _, err := cmd.ResolveUser(); err != nil {
			bad(at+".user", "%v", err)
		}
		if cmd.Timeout != "" {
			if d, err := time.ParseDuration(cmd.Timeout); err != nil || d < MinGateTimeout || d > MaxGateTimeout {
				bad(at+".timeout", "%q: give a duration from %v to %v, such as 30s", cmd.Timeout, MinGateTimeout, MaxGateTimeout)
			}
		}
	}
}
