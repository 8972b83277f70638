//go:build !linux

package gate

import (
	"errors"
	"os/exec"
)

// runAs: named commands run as their user on Linux only.
func runAs(*exec.Cmd, User) error {
	return errors.New("gate commands run as an unprivileged user on Linux only")
}

// start starts cmd.
func start(cmd *exec.Cmd, _ bool) error { return cmd.Start() }

// limited: no limits where commands do not run as a user.
func limited(argv []string) []string { return argv }
