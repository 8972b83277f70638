//go:build !unix

package gate

import "os/exec"

// ownGroup: process groups are a Unix thing; only the command is killed.
func ownGroup(*exec.Cmd) bool { return false }

// kill kills cmd.
func kill(cmd *exec.Cmd, _ bool) {
	if cmd.Process != nil {
		cmd.Process.Kill()
	}
}
