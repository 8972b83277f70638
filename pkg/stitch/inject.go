package stitch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
)

// heldMax and the record layout mirror struct held_packet (stitch.h):
// the held pair's slot, the length, then the segment from its IP header.
const (
	heldMax    = 2048
	heldHeader = 8
)

// openSenders opens the raw sockets that send held segments on, and the
// netlink handle that asks routes (covers), in the calling thread's
// network namespace (the interfaces'), once.
func (k *Kernel) openSenders() error {
	if k.raw4 >= 0 {
		return nil
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return fmt.Errorf("stitch: netlink: %w", err)
	}
	r4, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("stitch: raw IPv4 socket: %w", err)
	}
	r6, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		unix.Close(r4)
		nl.Close()
		return fmt.Errorf("stitch: raw IPv6 socket: %w", err)
	}
	k.raw4, k.raw6, k.nl = r4, r6, nl
	return nil
}

// covers says whether the packets a peer at addr sends to the gateway
// come in where the program is attached (the route to addr leaves by an
// interface it is attached to, as the peer's packets come in by it). A
// peer behind another interface would have its packets meet the closed
// sockets after the stitch: Join leaves such a connection alone.
func (k *Kernel) covers(addr netip.Addr) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.nl == nil {
		return false
	}
	routes, err := k.nl.RouteGet(addr.Unmap().AsSlice())
	if err != nil || len(routes) == 0 {
		return false
	}
	_, ok := k.links[routes[0].LinkIndex]
	return ok
}

// collectHeld moves every record the program kept into k.kept, by slot.
// k.mu is held.
func (k *Kernel) collectHeld() {
	if k.held == nil {
		return
	}
	k.held.SetDeadline(time.Now())
	var rec ringbuf.Record
	for k.held.ReadInto(&rec) == nil {
		if len(rec.RawSample) < heldHeader {
			continue
		}
		slot := binary.NativeEndian.Uint32(rec.RawSample[0:])
		n := int(binary.NativeEndian.Uint32(rec.RawSample[4:]))
		if n <= 0 || n > heldMax || heldHeader+n > len(rec.RawSample) {
			continue
		}
		k.kept[slot] = append(k.kept[slot], append([]byte(nil), rec.RawSample[heldHeader:heldHeader+n]...))
	}
}

// sendHeld sends on, translated by s's live pair, the data segments the
// hold of slot held dropped. Returns how many it sent.
func (k *Kernel) sendHeld(s *Stitch, held uint32) (int, error) {
	k.mu.Lock()
	k.collectHeld()
	pkts := k.kept[held]
	delete(k.kept, held)
	k.mu.Unlock()
	if len(pkts) == 0 {
		return 0, nil
	}
	var pair stitchbpf.StitchPair
	if err := k.objs.StitchPairs.Lookup(s.pair, &pair); err != nil {
		return 0, fmt.Errorf("stitch: read pair %d: %w", s.pair, err)
	}
	sent := 0
	var errs []error
	for _, pkt := range pkts {
		dir, ok := s.direction(pkt)
		if !ok {
			continue
		}
		dst, err := rewrite(pkt, pair.Dir[dir], pair.Dir[dir^1])
		if err == nil {
			err = k.send(pkt, dst)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sent++
	}
	return sent, errors.Join(errs...)
}

// direction says which of s's directions pkt (from its IP header) is.
func (s *Stitch) direction(pkt []byte) (stitchbpf.StitchDirIndex, bool) {
	src, dst, ok := tupleOf(pkt)
	if !ok {
		return 0, false
	}
	for _, d := range []struct {
		key stitchbpf.StitchTuple
		dir stitchbpf.StitchDirIndex
	}{{s.toBackend, stitchbpf.StitchDirIndexDIR_TO_BACKEND}, {s.toClient, stitchbpf.StitchDirIndexDIR_TO_CLIENT}} {
		if d.key == tuple(src, dst) {
			return d.dir, true
		}
	}
	return 0, false
}

func (k *Kernel) send(pkt []byte, dst netip.Addr) error {
	var err error
	if dst.Unmap().Is4() {
		err = unix.Sendto(k.raw4, pkt, 0, &unix.SockaddrInet4{Addr: dst.Unmap().As4()})
	} else {
		err = unix.Sendto(k.raw6, pkt, 0, &unix.SockaddrInet6{Addr: dst.As16()})
	}
	if err != nil {
		return fmt.Errorf("stitch: send to %s: %w", dst, err)
	}
	return nil
}

// layout finds a TCP segment's offsets in an IP packet: its header's
// length, the TCP header's offset and length. ok is false for anything
// else.
func layout(pkt []byte) (v6 bool, l4, hlen int, ok bool) {
	if len(pkt) < 20 {
		return false, 0, 0, false
	}
	switch pkt[0] >> 4 {
	case 4:
		l4 = int(pkt[0]&0xf) * 4
		if pkt[9] != unix.IPPROTO_TCP || l4 < 20 {
			return false, 0, 0, false
		}
	case 6:
		if len(pkt) < 40 || pkt[6] != unix.IPPROTO_TCP {
			return false, 0, 0, false
		}
		v6, l4 = true, 40
	default:
		return false, 0, 0, false
	}
	if len(pkt) < l4+20 {
		return false, 0, 0, false
	}
	hlen = int(pkt[l4+12]>>4) * 4
	return v6, l4, hlen, hlen >= 20 && l4+hlen <= len(pkt)
}

func tupleOf(pkt []byte) (src, dst netip.AddrPort, ok bool) {
	v6, l4, _, ok := layout(pkt)
	if !ok {
		return src, dst, false
	}
	var s, d netip.Addr
	if v6 {
		s, d = netip.AddrFrom16([16]byte(pkt[8:24])), netip.AddrFrom16([16]byte(pkt[24:40]))
	} else {
		s, d = netip.AddrFrom4([4]byte(pkt[12:16])), netip.AddrFrom4([4]byte(pkt[16:20]))
	}
	return netip.AddrPortFrom(s, binary.BigEndian.Uint16(pkt[l4:])), netip.AddrPortFrom(d, binary.BigEndian.Uint16(pkt[l4+2:])), true
}
