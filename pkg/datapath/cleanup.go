package datapath

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Cleanup removes what agents left under pinPath: it detaches their links
// and their clsact filters on the named interfaces (of the caller's network
// namespace), and removes every pin. Run it only with no agent running.
func Cleanup(pinPath string, ifnames []string, log *slog.Logger) error {
	links := filepath.Join(pinPath, "links")
	companions := filepath.Join(pinPath, companionsDir)
	errs := unpinLinks(companions, log)
	errs = append(errs, unpinLinks(links, log)...)
	errs = append(errs, removeStitchPins(filepath.Join(pinPath, stitchDir), log)...)
	for _, name := range ifnames {
		nl, err := netlink.LinkByName(name)
		if err != nil {
			continue // gone: nothing attached
		}
		f, err := ourFilter(nl.Attrs().Index)
		if err != nil {
			errs = append(errs, fmt.Errorf("interface %s: %w", name, err))
			continue
		}
		if f != nil {
			if err := netlink.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("interface %s: remove tc filter: %w", name, err))
				continue
			}
			log.Info("removed the tc filter", "interface", name)
		}
	}
	maps := filepath.Join(pinPath, "maps")
	entries, err := os.ReadDir(maps)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		if err := os.Remove(filepath.Join(maps, e.Name())); err != nil {
			errs = append(errs, err)
		}
	}
	if len(entries) > 0 {
		log.Info("removed the pinned maps", "path", maps, "maps", len(entries))
	}
	for _, p := range []string{filepath.Join(pinPath, "info"), companions, links, maps} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(pinPath); err != nil && !errors.Is(err, os.ErrNotExist) &&
		!errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// stitchDir holds the L7 stitch's pins (package stitch, pins.go): its
// maps and, under links/, its TCX links.
const stitchDir = "stitch"

// removeStitchPins removes the stitch's pins under dir: its program
// leaves the interfaces, and the connections it stitched end.
func removeStitchPins(dir string, log *slog.Logger) []error {
	errs := unpinLinks(filepath.Join(dir, "links"), log)
	for _, p := range []string{"keys", "pairs", "links", ""} {
		if err := os.Remove(filepath.Join(dir, p)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errs
}

// unpinLinks unpins (and so detaches) every link pinned in dir.
func unpinLinks(dir string, log *slog.Logger) []error {
	var errs []error
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		file := filepath.Join(dir, e.Name())
		if l, err := link.LoadPinnedLink(file, nil); err == nil {
			if err := l.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin %s: %w", file, err))
			}
			l.Close() // the last reference: the program leaves the interface
		} else if err := os.Remove(file); err != nil {
			errs = append(errs, err)
		}
		log.Info("detached", "interface", e.Name(), "pins", filepath.Base(dir))
	}
	return errs
}
