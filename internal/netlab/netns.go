package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces live, as with `ip netns`.
const NetnsDir = "/run/netns"

// DefaultPrefix is the name prefix used when Config.Prefix is empty.
const DefaultPrefix = "gl"

// prefixRE restricts prefixes to letters so that "<prefix><pid>x<n>" parses
// unambiguously and one prefix's pattern never matches another prefix's labs.
var prefixRE = regexp.MustCompile(`^[a-z]{1,8}$`)

// live holds the lab names ("gl1234x0") this process created and has not
// closed. CleanupStale never touches them, and deletes namespaces that carry
// this process's pid but are not live: a previous process with the same pid
// left them behind.
var live struct {
	sync.Mutex
	names map[string]bool
}

func markLive(lab string, on bool) {
	live.Lock()
	defer live.Unlock()
	if live.names == nil {
		live.names = map[string]bool{}
	}
	if on {
		live.names[lab] = true
	} else {
		delete(live.names, lab)
	}
}

func isLive(lab string) bool {
	live.Lock()
	defer live.Unlock()
	return live.names[lab]
}

func stalePattern(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^(` + regexp.QuoteMeta(prefix) + `(\d+)x\d+)-`)
}

// CleanupStale deletes the namespaces of labs with this prefix whose owner
// process is gone: every /run/netns entry named "<prefix><pid>x<n>-..." whose
// pid is not a running process (or is this process, but the lab is not one
// this process has open: a previous process with the same pid left it).
// Deleting a namespace removes its interfaces. Labs of running processes are
// left alone, so concurrent test binaries are safe. New calls it.
func CleanupStale(prefix string) error {
	names, err := StaleNamespaces(prefix)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range names {
		if err := deleteNetNS(name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StaleNamespaces lists the namespaces CleanupStale would delete.
func StaleNamespaces(prefix string) ([]string, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(prefix) {
		return nil, fmt.Errorf("netlab: invalid prefix %q (want 1-8 lowercase letters)", prefix)
	}
	entries, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	re := stalePattern(prefix)
	var out []string
	for _, e := range entries {
		m := re.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[2])
		if err != nil {
			continue // absurdly long number: not ours
		}
		stale := !processAlive(pid)
		if pid == os.Getpid() {
			stale = !isLive(m[1])
		}
		if stale {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// ensureNetnsDir makes /run/netns a shared mount point, as `ip netns add`
// does, so that unmounting a namespace there also unmounts it in mount
// namespaces created later (e.g. by `ip netns exec`), and the namespace can
// really go away.
func ensureNetnsDir() error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return err
	}
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) { // not a mount point yet
		if err := unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s: %w", NetnsDir, err)
		}
		err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s shared: %w", NetnsDir, err)
	}
	return nil
}

// createNetNS creates a new network namespace and pins it at
// /run/netns/<name> (like `ip netns add`). It never changes the network
// namespace of any thread but a throwaway one: the unshare happens on a
// locked OS thread that is never unlocked, so the Go runtime terminates that
// thread when the goroutine returns instead of reusing it.
func createNetNS(name string) (err error) {
	if strings.ContainsRune(name, '/') {
		return fmt.Errorf("netlab: bad namespace name %q", name)
	}
	path := filepath.Join(NetnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("netlab: create netns %s: %w", name, err)
	}
	f.Close()
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	errc := make(chan error, 1)
	go func() {
		errc <- switched(func() error {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			}
			return nil
		}, func() error {
			if err := unix.Mount("/proc/thread-self/ns/net", path, "none", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind-mount the new netns: %w", err)
			}
			return nil
		})
	}()
	if err := <-errc; err != nil {
		return fmt.Errorf("netlab: create netns %s: %w", name, err)
	}
	return nil
}

// deleteNetNS removes a namespace created by createNetNS (or `ip netns add`).
// The namespace itself, and with it its interfaces, goes away once nothing
// else (a process, a socket, an open fd) references it.
func deleteNetNS(name string) error {
	path := filepath.Join(NetnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netlab: delete netns %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netlab: delete netns %s: %w", name, err)
	}
	return nil
}
