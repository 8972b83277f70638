// Package testenv decides whether tests that need privileges can run.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// Capability bits (linux/capability.h).
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capBPF      = 39
)

// RequirePrivileges skips t, with the reason, unless the process can do
// what the datapath and lab tests need: root, CAP_NET_ADMIN, CAP_SYS_ADMIN
// and CAP_BPF effective, a bpffs at /sys/fs/bpf, and network namespaces
// that can be created. When the environment variable CI is true, it fails
// t instead: in CI these tests must run, not silently skip.
func RequirePrivileges(t testing.TB) {
	t.Helper()
	reason := problem()
	if reason == "" {
		return
	}
	if inCI() {
		t.Fatalf("testenv: privileged test cannot run (and CI=true forbids skipping): %s", reason)
	}
	t.Skipf("testenv: skipping privileged test: %s", reason)
}

// RequireTool returns the path of the program name, or skips t with the
// Debian package that provides it (make deps installs it). When CI is true
// it fails t instead: in CI every tool the tests use must be there.
func RequireTool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if inCI() {
		t.Fatalf("testenv: %s is not installed (Debian package %s; make deps installs it), and CI=true forbids skipping: %v", name, debianPackage, err)
	}
	t.Skipf("testenv: skipping: %s is not installed (Debian package %s; make deps installs it)", name, debianPackage)
	return ""
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// problem returns why privileged tests cannot run, or "". The probe runs once.
var problem = sync.OnceValue(func() string {
	if runtime.GOOS != "linux" {
		return "needs Linux, running on " + runtime.GOOS
	}
	if os.Geteuid() != 0 {
		return fmt.Sprintf("needs root (euid %d)", os.Geteuid())
	}
	eff, err := effectiveCaps()
	if err != nil {
		return err.Error()
	}
	for _, c := range []struct {
		bit  uint
		name string
	}{{capNetAdmin, "CAP_NET_ADMIN"}, {capSysAdmin, "CAP_SYS_ADMIN"}, {capBPF, "CAP_BPF"}} {
		if eff&(1<<c.bit) == 0 {
			return "missing " + c.name
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil {
		return fmt.Sprintf("bpffs unusable: %v", err)
	}
	if st.Type != unix.BPF_FS_MAGIC {
		return "bpffs is not mounted at /sys/fs/bpf (mount -t bpf bpf /sys/fs/bpf)"
	}
	if err := probeNetns(); err != nil {
		return "network namespaces unusable: " + err.Error()
	}
	return ""
})

// effectiveCaps parses CapEff from /proc/self/status.
func effectiveCaps() (uint64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read capabilities: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, errors.New("no CapEff in /proc/self/status")
}

// probeNetns creates a network namespace on a locked thread of a goroutine
// of its own, checks /run/netns is usable, and moves the thread back. If
// moving back fails the thread stays locked and the runtime ends it (or, if
// it is the main thread, parks it for good) with the goroutine.
func probeNetns() error {
	if err := os.MkdirAll("/run/netns", 0o755); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(orig)
		err = unix.Unshare(unix.CLONE_NEWNET)
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
