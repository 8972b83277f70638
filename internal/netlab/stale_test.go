package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if processAlive(pid) {
		t.Skipf("pid %d reused already", pid)
	}
	return pid
}

func TestCleanupStale(t *testing.T) {
	testenv.RequirePrivileges(t)
	const prefix = "glst"
	dead := fmt.Sprintf("%s%dx0", prefix, deadPid(t))
	mine := fmt.Sprintf("%s%dx99", prefix, os.Getpid())  // same pid, not live: a previous process
	alive := fmt.Sprintf("%s%dx0", prefix, os.Getppid()) // a running process
	other := fmt.Sprintf("glother%dx0", deadPid(t))      // another prefix
	for _, ns := range []string{dead + "-gw", dead + "-cl", mine + "-gw", alive + "-gw", other + "-gw"} {
		if err := createNetNS(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteNetNS(ns) })
	}
	// Give the stale lab an interface, like a real leftover.
	h := &Host{Name: "gw", NetNS: dead + "-gw", fd: -1}
	fd, err := unix.Open(filepath.Join(NetnsDir, h.NetNS), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.fd = fd
	if err := h.Do(func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0"}, PeerName: "v1"})
	}); err != nil {
		t.Fatal(err)
	}
	h.close()

	stale, err := StaleNamespaces(prefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(stale)
	if want := []string{dead + "-cl", dead + "-gw", mine + "-gw"}; !slices.Equal(stale, want) {
		slices.Sort(want)
		if !slices.Equal(stale, want) {
			t.Fatalf("StaleNamespaces = %v, want %v", stale, want)
		}
	}

	l := NewT(t, Config{Prefix: prefix, Stable: 1, Canary: -1})
	for _, lab := range []string{dead, mine} {
		if got := labNamespaces(t, lab); len(got) > 0 {
			t.Errorf("stale namespaces survived New: %v", got)
		}
	}
	for _, lab := range []string{alive, other} {
		if got := labNamespaces(t, lab); len(got) != 1 {
			t.Errorf("namespace of %s was removed", lab)
		}
	}
	if got := labNamespaces(t, l.Name); len(got) != 4 {
		t.Errorf("lab namespaces = %v", got)
	}
	if err := CleanupStale(prefix); err != nil {
		t.Fatal(err)
	}
	if got := labNamespaces(t, l.Name); len(got) != 4 {
		t.Errorf("CleanupStale removed a live lab of this process: %v", got)
	}
}
