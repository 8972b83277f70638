package stitch

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Pins: stitched connections outlive the process that stitched them not
// only across a handed-over restart (handoff.go) but across any exit — a
// crash, a stop without a service manager's store — when the program's
// links and maps are pinned in a bpffs that outlives the process, as the
// steering programs' are. Under a directory dir:
//
//	dir/keys, dir/pairs   the maps stitch_keys and stitch_pairs
//	dir/links/<ifindex>   the program's TCX link on each interface
//
// The next process loads them (LoadPinned) as it would what was handed
// over, and pins its own in their place (Pin).
const (
	pinKeys  = "keys"
	pinPairs = "pairs"
	pinLinks = "links"
)

// LoadPinned returns what a previous Kernel pinned under dir, as Handed
// (without reserved ports, which are sockets): Keys is nil when nothing
// is pinned there.
func LoadPinned(dir string) (Handed, error) {
	var h Handed
	keys, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinKeys), nil)
	if errors.Is(err, os.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("stitch: load the pinned keys: %w", err)
	}
	defer keys.Close()
	pairs, err := ebpf.LoadPinnedMap(filepath.Join(dir, pinPairs), nil)
	if err != nil {
		return h, fmt.Errorf("stitch: load the pinned pairs: %w", err)
	}
	defer pairs.Close()
	fail := func(err error) (Handed, error) {
		h.Close()
		return Handed{}, fmt.Errorf("stitch: load the pins: %w", err)
	}
	if h.Keys, err = dupFile(keys.FD(), "stitch_keys"); err != nil {
		return fail(err)
	}
	if h.Pairs, err = dupFile(pairs.FD(), "stitch_pairs"); err != nil {
		return fail(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, pinLinks))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail(err)
	}
	for _, e := range entries {
		l, err := link.LoadPinnedLink(filepath.Join(dir, pinLinks, e.Name()), nil)
		if err != nil {
			return fail(err)
		}
		f, err := linkFile(l, "stitch link, interface "+e.Name())
		l.Close()
		if err != nil {
			return fail(err)
		}
		h.Links = append(h.Links, f)
	}
	return h, nil
}

// Pin pins k's maps and links under dir, in place of what was pinned
// there (a previous Kernel's links are unpinned: they detach once their
// last descriptor closes), and pins the links k attaches from then on.
func (k *Kernel) Pin(dir string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := Unpin(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(dir, pinLinks), 0o700); err != nil {
		return fmt.Errorf("stitch: pin: %w", err)
	}
	k.pinDir = dir
	errs := []error{k.objs.StitchKeys.Pin(filepath.Join(dir, pinKeys)), k.objs.StitchPairs.Pin(filepath.Join(dir, pinPairs))}
	for idx, l := range k.links {
		errs = append(errs, k.pinLink(idx, l))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stitch: pin: %w", err)
	}
	return nil
}

// pinLink pins the link on interface idx, if k pins. k.mu is held.
func (k *Kernel) pinLink(idx int, l link.Link) error {
	if k.pinDir == "" {
		return nil
	}
	return l.Pin(filepath.Join(k.pinDir, pinLinks, strconv.Itoa(idx)))
}

// unpinLink removes the pin of the link on interface idx. k.mu is held.
func (k *Kernel) unpinLink(idx int) {
	if k.pinDir != "" {
		os.Remove(filepath.Join(k.pinDir, pinLinks, strconv.Itoa(idx)))
	}
}

// Unpin removes every pin under dir: the maps and the programs go once
// no descriptor holds them, and with the program the stitched
// connections (their next packets meet a stack without their sockets).
func Unpin(dir string) error {
	var errs []error
	entries, err := os.ReadDir(filepath.Join(dir, pinLinks))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for _, e := range entries {
		errs = append(errs, removeIfThere(filepath.Join(dir, pinLinks, e.Name())))
	}
	for _, p := range []string{pinKeys, pinPairs, pinLinks} {
		errs = append(errs, removeIfThere(filepath.Join(dir, p)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stitch: unpin %s: %w", dir, err)
	}
	return nil
}

func removeIfThere(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// Keep makes every Wait whose context ends from now on leave its pair
// stitched: the process stops, and its pins keep the connections going
// for the next one (k must be pinned: Pin).
func (k *Kernel) Keep() { k.keep.Store(true) }

// Pinned says whether k's maps and links are pinned.
func (k *Kernel) Pinned() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.pinDir != ""
}
