package stitch

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
)

// Across a restart of the process that owns a Kernel (the agent under a
// service manager with a file descriptor store), stitched connections go
// on: they are state of the kernel only (the gateway's sockets are gone),
// so what must outlive the process is the program's attachment and its
// maps. HandOff gives the descriptors that keep them: the TCX links (the
// program stays attached, the connections flow while no process runs),
// the two maps, and each connection's reserved port. The next process
// opens its Kernel on the same maps (Options.Inherit), attaches its own
// program first, closes the old links, and takes the pairs on (Adopt).

// Handed is what a Kernel passes to the next one.
type Handed struct {
	Links       []*os.File // the program's TCX links
	Keys, Pairs *os.File   // its maps stitch_keys and stitch_pairs
	// Reserves are the stitched connections' reserved ports by pair slot.
	Reserves map[uint32]*os.File
}

// Close closes every descriptor of h.
func (h Handed) Close() {
	for _, f := range h.Links {
		f.Close()
	}
	for _, f := range []*os.File{h.Keys, h.Pairs} {
		if f != nil {
			f.Close()
		}
	}
	for _, f := range h.Reserves {
		f.Close()
	}
}

// Inherited are the maps a previous Kernel handed over (Handed.Keys and
// Handed.Pairs), for Options.Inherit.
type Inherited struct {
	Keys, Pairs *os.File
}

// ErrNotInherited says Open could not take the previous Kernel's maps
// (this build's differ): the connections stitched before end when its
// links are closed.
var ErrNotInherited = errors.New("stitch: the previous maps do not fit this build")

// HandOff returns duplicates of the descriptors that keep k's stitched
// connections going without this process: its links and maps, and the
// reserved ports of joined (connections whose Wait returned ErrStopped).
// The caller closes them once stored; k may then be closed.
func (k *Kernel) HandOff(joined []*Joined) (Handed, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	h := Handed{Reserves: map[uint32]*os.File{}}
	fail := func(err error) (Handed, error) {
		h.Close()
		return Handed{}, fmt.Errorf("stitch: hand off: %w", err)
	}
	for idx, l := range k.links {
		f, err := linkFile(l, fmt.Sprintf("stitch link, interface %d", idx))
		if err != nil {
			return fail(err)
		}
		h.Links = append(h.Links, f)
	}
	var err error
	if h.Keys, err = dupFile(k.objs.StitchKeys.FD(), "stitch_keys"); err != nil {
		return fail(err)
	}
	if h.Pairs, err = dupFile(k.objs.StitchPairs.FD(), "stitch_pairs"); err != nil {
		return fail(err)
	}
	for _, j := range joined {
		if j.reserve == nil {
			continue
		}
		f, err := dupFile(int(j.reserve.Fd()), j.reserve.Name())
		if err != nil {
			return fail(err)
		}
		h.Reserves[j.pair] = f
	}
	return h, nil
}

func linkFile(l link.Link, name string) (*os.File, error) {
	fder, ok := l.(interface{ FD() int })
	if !ok {
		return nil, fmt.Errorf("%s (%T) has no descriptor", name, l)
	}
	return dupFile(fder.FD(), name)
}

func dupFile(fd int, name string) (*os.File, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate %s: %w", name, err)
	}
	return os.NewFile(uintptr(dup), name), nil
}

// inheritMaps turns in's descriptors into map replacements for spec,
// checked by the loader against this build's maps. The files stay the
// caller's.
func inheritMaps(in *Inherited) (map[string]*ebpf.Map, error) {
	out := map[string]*ebpf.Map{}
	for name, f := range map[string]*os.File{stitchbpf.StitchMapStitchKeys: in.Keys, stitchbpf.StitchMapStitchPairs: in.Pairs} {
		if f == nil {
			return nil, fmt.Errorf("%w: map %s was not handed over", ErrNotInherited, name)
		}
		dup, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("stitch: duplicate inherited map %s: %w", name, err)
		}
		m, err := ebpf.NewMapFromFD(dup)
		if err != nil {
			unix.Close(dup)
			return nil, fmt.Errorf("%w: map %s: %w", ErrNotInherited, name, err)
		}
		out[name] = m
	}
	return out, nil
}

// Adopt takes on the connections stitched in the maps k inherited: each
// is returned as a Joined to Wait for, its slot taken, its port reserved
// again (by the descriptor reserves holds for its slot, which Adopt takes,
// or bound anew). A pair still held — a Join the previous process did not
// finish — is removed: its sockets went with that process. Reserves not
// used are closed.
func (k *Kernel) Adopt(reserves map[uint32]*os.File) ([]*Joined, error) {
	defer func() {
		for _, f := range reserves {
			f.Close()
		}
	}()
	found, err := k.pairsInMaps()
	if err != nil {
		return nil, fmt.Errorf("stitch: adopt: %w", err)
	}
	k.takeSlots(found)
	var out []*Joined
	var errs []error
	for slot, s := range found {
		var pair stitchbpf.StitchPair
		err := k.objs.StitchPairs.Lookup(slot, &pair)
		if err == nil && pair.Origin != originJoin {
			errs = append(errs, k.inheritAccepted(slot, &pair)) // the kernel accept's (accept.go)
			continue
		}
		if err != nil || pair.Hold != 0 {
			errs = append(errs, k.Remove(s)) // and its slot is free again
			continue
		}
		j := &Joined{Stitch: s, reserve: reserves[slot]}
		delete(reserves, slot)
		if j.reserve == nil && s.toClient != (stitchbpf.StitchTuple{}) {
			// The backend's packets' destination is the gateway's end.
			local := netip.AddrPortFrom(netip.AddrFrom16(s.toClient.Daddr).Unmap(), htons(s.toClient.Dport))
			var err error
			if j.reserve, err = reservePort(local); err != nil {
				j.Trouble = err
			}
		}
		out = append(out, j)
	}
	k.counts.add(int64(len(out)))
	return out, errors.Join(errs...)
}

// pairsInMaps returns the pairs the keys in the maps name, by slot.
func (k *Kernel) pairsInMaps() (map[uint32]*Stitch, error) {
	found := map[uint32]*Stitch{}
	var key stitchbpf.StitchTuple
	var ref stitchbpf.StitchRef
	iter := k.objs.StitchKeys.Iterate()
	for iter.Next(&key, &ref) {
		s := found[ref.Pair]
		if s == nil {
			s = &Stitch{pair: ref.Pair}
			found[ref.Pair] = s
		}
		if ref.Dir == stitchbpf.StitchDirIndexDIR_TO_CLIENT {
			s.toClient = key
		} else {
			s.toBackend = key
		}
	}
	if err := iter.Err(); err != nil {
		return nil, fmt.Errorf("read the keys: %w", err)
	}
	return found, nil
}

// takeSlots marks the slots of used in use (adopted pairs').
func (k *Kernel) takeSlots(used map[uint32]*Stitch) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.free = slices.DeleteFunc(k.free, func(slot uint32) bool { return used[slot] != nil })
}
