package netlab

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// nsInode returns the inode identifying the namespace pinned at name.
func nsInode(t *testing.T, name string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(NetnsDir, name), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// assertNoNSRefs checks that no thread of this process is in, and no open
// fd refers to, one of the namespaces: Do and the load workers must not leak
// threads into the lab, and Close must release its handles. Thread exit is
// asynchronous, so it polls briefly.
func assertNoNSRefs(t *testing.T, inodes map[uint64]string) {
	t.Helper()
	var bad []string
	for range 100 {
		bad = bad[:0]
		for _, pattern := range []string{"/proc/self/task/*/ns/net", "/proc/self/fd/*"} {
			paths, _ := filepath.Glob(pattern)
			for _, p := range paths {
				target, err := os.Readlink(p)
				if err != nil {
					continue
				}
				var ino uint64
				if _, err := fmt.Sscanf(target, "net:[%d]", &ino); err == nil {
					if ns, ok := inodes[ino]; ok {
						bad = append(bad, p+" -> "+ns)
					}
				}
			}
		}
		if len(bad) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("references to lab namespaces remain: %v", bad)
}

func labInodes(t *testing.T, l *Lab) map[uint64]string {
	inodes := map[uint64]string{}
	for _, h := range l.Hosts() {
		inodes[nsInode(t, h.NetNS)] = h.NetNS
	}
	return inodes
}

// TestThreadsLeaveTheLab runs many Do calls and load workers (so some land
// on the main thread, which the runtime cannot end) and checks that after
// Close no thread of the process is left in a lab namespace.
func TestThreadsLeaveTheLab(t *testing.T) {
	l, ctx := oneBackendLab(t)
	s0 := l.Stable[0]
	for range 5 {
		res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, HelloPort), nil, 256, 128)
		if err != nil || res.Failed > 0 {
			t.Fatalf("%v, %v", res, err)
		}
	}
	done := make(chan error, 64)
	for range 64 {
		go func() { done <- l.Client.Do(func() error { return nil }) }()
	}
	for range 64 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	inodes := labInodes(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoNSRefs(t, inodes)
}
