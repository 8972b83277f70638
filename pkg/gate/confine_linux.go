//go:build linux

package gate

import (
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// runAs makes cmd run as u: its uid and gid, no supplementary groups, no
// ambient capabilities (a process whose uid is not 0 has no other
// capabilities after exec). It refuses root.
func runAs(cmd *exec.Cmd, u User) error {
	if u.UID == 0 || u.GID == 0 {
		return fmt.Errorf("user %q has uid %d, gid %d: a gate command never runs as root or group root", u.Name, u.UID, u.GID)
	}
	attr := &syscall.SysProcAttr{}
	if cmd.SysProcAttr != nil {
		own := *cmd.SysProcAttr // the caller's may be shared
		attr = &own
	}
	attr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}
	attr.AmbientCaps = nil
	cmd.SysProcAttr = attr
	return nil
}

// Prlimit is the program that sets a confined command's limits: it runs
// as the command's user, lowers its own limits (which needs no
// privilege) and then executes the command, so that the limits hold from
// the command's first instruction (util-linux; Debian's is essential).
const Prlimit = "/usr/bin/prlimit"

// limited returns argv run under MaxProcs and MaxAddressSpace.
func limited(argv []string) []string {
	return append([]string{Prlimit, fmt.Sprintf("--nproc=%d:%d", MaxProcs, MaxProcs),
		fmt.Sprintf("--as=%d:%d", MaxAddressSpace, MaxAddressSpace), "--"}, argv...)
}

// start starts cmd. A confined command is started with no_new_privs: no
// setuid program or file capability gives it privileges.
func start(cmd *exec.Cmd, confined bool) error {
	if !confined {
		return cmd.Start()
	}
	// no_new_privs is a thread's, and a child inherits it from the
	// thread that forks it: set it on a thread locked to this goroutine
	// and fork from there. The thread is never unlocked, so it exits
	// with the goroutine: no other goroutine runs on it with the flag.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			errc <- fmt.Errorf("set no_new_privs: %w", err)
			return
		}
		errc <- cmd.Start()
	}()
	err := <-errc
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w (to run a gate command as its user the agent needs CAP_SETUID and CAP_SETGID, and CAP_KILL to stop it: see docs/gates.md)", err)
	}
	return err
}
