//go:build unix

package gate

import (
	"os/exec"
	"syscall"
)

// ownGroup puts cmd in a process group of its own, so that killing the
// group kills what the command started too (sh -c "a | b"), and reports
// whether cmd leads its group. A command whose SysProcAttr already
// chooses a session or group is left as it is.
func ownGroup(cmd *exec.Cmd) bool {
	a := cmd.SysProcAttr
	switch {
	case a == nil:
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		return true
	case a.Setsid:
		return true
	case a.Setpgid:
		return a.Pgid == 0
	case a.Foreground || a.Setctty:
		return false
	}
	own := *a // the caller's may be shared
	own.Setpgid = true
	cmd.SysProcAttr = &own
	return true
}

// kill kills cmd, and its process group when it leads one.
func kill(cmd *exec.Cmd, group bool) {
	if cmd.Process == nil {
		return
	}
	if group {
		// The group outlives its leader while a member lives, so this
		// also reaches children after the command itself was reaped.
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.Process.Kill()
}
