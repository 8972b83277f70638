package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FloodKind is the kind of packet Host.Flood forges.
type FloodKind int

const (
	// FloodSYN sends bare TCP SYNs (no options) with a random sequence
	// number.
	FloodSYN FloodKind = iota + 1
	// FloodACK sends bare TCP ACKs with random sequence and
	// acknowledgement numbers: segments of connections that do not exist.
	FloodACK
	// FloodUDP sends UDP datagrams of FloodUDPPayload random bytes.
	FloodUDP
)

func (k FloodKind) String() string {
	switch k {
	case FloodSYN:
		return "SYN"
	case FloodACK:
		return "ACK"
	case FloodUDP:
		return "UDP"
	}
	return fmt.Sprintf("FloodKind(%d)", int(k))
}

// Bounds and defaults of Flood.
const (
	// MaxFloodCount bounds FloodSpec.Count.
	MaxFloodCount = 10_000_000
	// DefaultFloodDuration is the MaxDuration of a FloodSpec that sets none.
	DefaultFloodDuration = 30 * time.Second
	// MaxFloodDuration bounds FloodSpec.MaxDuration.
	MaxFloodDuration = 10 * time.Minute
	// FloodUDPPayload is the payload length of FloodUDP datagrams.
	FloodUDPPayload = 16

	// floodBatch is the number of frames handed to one sendmmsg.
	floodBatch = 64
	// floodRetryPause is the pause after a transient send error.
	floodRetryPause = 100 * time.Microsecond
	// floodResolveTimeout bounds the wait for the next hop's MAC address.
	floodResolveTimeout = 3 * time.Second
)

// FloodSpec describes a flood of forged packets; see Host.Flood.
type FloodSpec struct {
	// Kind is what to send; required.
	Kind FloodKind
	// Dst is the target, typically a VIP (VIP4:80); it must lie in LabNet4
	// or LabNet6 and have a non-zero port.
	Dst netip.AddrPort
	// Src is the prefix forged source addresses are drawn from (uniformly
	// over its host bits). It must lie in LabNet4 or LabNet6, in Dst's
	// family. Default SpoofNet4 or SpoofNet6, whose answers the lab drops.
	Src netip.Prefix
	// Count is the number of packets to send: 1..MaxFloodCount.
	Count int
	// MaxDuration stops the flood when reached, even short of Count:
	// 0 means DefaultFloodDuration, at most MaxFloodDuration.
	MaxDuration time.Duration
	// Rate is the target rate in packets per second; 0 sends as fast as
	// the kernel takes them.
	Rate int
	// Seed seeds the generator of addresses, ports, sequence numbers and
	// payloads: the same spec (Seed included) forges the same packets in
	// the same order.
	Seed uint64
}

// FloodResult is the outcome of Host.Flood.
type FloodResult struct {
	// Sent counts the frames the kernel accepted.
	Sent int
	// Elapsed is the time the sending took, from the first batch to the end.
	Elapsed time.Duration
	// TimedOut is true when MaxDuration stopped the flood before Count.
	TimedOut bool
	// SendErrors counts the transient send failures (ENOBUFS, EAGAIN) after
	// which the same frames were sent again; LastSendError is the last one.
	SendErrors    int
	LastSendError error
}

// Rate returns the achieved rate in packets per second.
func (r FloodResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Sent) / r.Elapsed.Seconds()
}

func (r FloodResult) String() string {
	return fmt.Sprintf("%d sent in %v (%.0f pkt/s, %d send errors, timed out %v)",
		r.Sent, r.Elapsed.Round(time.Millisecond), r.Rate(), r.SendErrors, r.TimedOut)
}

// withDefaults checks spec and fills in its defaults.
func (s FloodSpec) withDefaults() (FloodSpec, error) {
	switch s.Kind {
	case FloodSYN, FloodACK, FloodUDP:
	default:
		return s, fmt.Errorf("netlab: flood: unknown kind %v", s.Kind)
	}
	if !s.Dst.IsValid() {
		return s, fmt.Errorf("netlab: flood: invalid destination %v", s.Dst)
	}
	dst := s.Dst.Addr().Unmap().WithZone("")
	s.Dst = netip.AddrPortFrom(dst, s.Dst.Port())
	if s.Dst.Port() == 0 {
		return s, fmt.Errorf("netlab: flood: destination %v has port 0", s.Dst)
	}
	lab := LabNet4
	if dst.Is6() {
		lab = LabNet6
	}
	if !lab.Contains(dst) {
		return s, fmt.Errorf("netlab: flood: destination %v is outside the lab (%v)", dst, lab)
	}
	if s.Count <= 0 || s.Count > MaxFloodCount {
		return s, fmt.Errorf("netlab: flood: count %d, want 1..%d", s.Count, MaxFloodCount)
	}
	if s.MaxDuration == 0 {
		s.MaxDuration = DefaultFloodDuration
	}
	if s.MaxDuration < 0 || s.MaxDuration > MaxFloodDuration {
		return s, fmt.Errorf("netlab: flood: max duration %v, want 0..%v", s.MaxDuration, MaxFloodDuration)
	}
	if s.Rate < 0 {
		return s, fmt.Errorf("netlab: flood: negative rate %d", s.Rate)
	}
	if !s.Src.IsValid() {
		s.Src = SpoofNet4
		if dst.Is6() {
			s.Src = SpoofNet6
		}
	}
	if s.Src.Addr().Is4() != dst.Is4() {
		return s, fmt.Errorf("netlab: flood: source prefix %v is not of the family of destination %v", s.Src, dst)
	}
	s.Src = s.Src.Masked()
	if s.Src.Bits() < lab.Bits() || !lab.Contains(s.Src.Addr()) {
		return s, fmt.Errorf("netlab: flood: source prefix %v is outside the lab (%v)", s.Src, lab)
	}
	return s, nil
}

// Flood sends spec.Count forged packets to spec.Dst out of h's main
// interface (h.Link; use the client), as fast as possible or at spec.Rate,
// and stops early when spec.MaxDuration is reached or ctx ends. Every
// packet has a random source address in spec.Src, a random source port in
// 1024..65535, valid IPv4/IPv6 and TCP/UDP checksums, h.Link's MAC as
// Ethernet source and, as destination, the MAC of the next hop toward
// spec.Dst (the gateway's cli0 for the client), which Flood resolves from
// h's neighbour table.
//
// Frames go out through an AF_PACKET socket created inside h's namespace
// and bound to h.Link, bypassing the qdisc, in batches of sendmmsg. A bad
// spec is refused before anything is sent. The error is also non-nil when
// ctx ended early (with the partial result) or a send failed for good; a
// flood cut short by MaxDuration sets TimedOut without an error.
func (h *Host) Flood(ctx context.Context, spec FloodSpec) (FloodResult, error) {
	spec, err := spec.withDefaults()
	if err != nil {
		return FloodResult{}, err
	}
	ifindex, srcMAC, err := h.linkInfo(h.Link)
	if err != nil {
		return FloodResult{}, err
	}
	dstMAC, err := h.nextHopMAC(ctx, spec.Dst.Addr(), ifindex)
	if err != nil {
		return FloodResult{}, err
	}
	gen := newFrameGen(spec, srcMAC, dstMAC)
	fd, err := h.packetSocket(ifindex)
	if err != nil {
		return FloodResult{}, err
	}
	defer unix.Close(fd)
	return floodLoop(ctx, fd, gen, spec)
}

// linkInfo returns the index and MAC address of h's interface ifname.
func (h *Host) linkInfo(ifname string) (int, net.HardwareAddr, error) {
	var idx int
	var mac net.HardwareAddr
	err := h.withNL(func(nlh *netlink.Handle) error {
		link, err := nlh.LinkByName(ifname)
		if err != nil {
			return err
		}
		idx, mac = link.Attrs().Index, link.Attrs().HardwareAddr
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("netlab: %s: %s: %w", h.Name, ifname, err)
	}
	if len(mac) != 6 {
		return 0, nil, fmt.Errorf("netlab: %s: %s has no Ethernet address (%v)", h.Name, ifname, mac)
	}
	return idx, mac, nil
}

// nextHopMAC returns the MAC address of the next hop from h toward dst,
// which must leave through interface ifindex. If h's neighbour table has
// none yet, it sends a UDP datagram to the next hop's discard port to make
// the kernel resolve it, and waits (at most floodResolveTimeout).
func (h *Host) nextHopMAC(ctx context.Context, dst netip.Addr, ifindex int) (net.HardwareAddr, error) {
	var nh netip.Addr
	err := h.withNL(func(nlh *netlink.Handle) error {
		routes, err := nlh.RouteGet(dst.AsSlice())
		if err != nil {
			return err
		}
		if len(routes) == 0 || routes[0].LinkIndex != ifindex {
			return fmt.Errorf("no route to %v through interface %d", dst, ifindex)
		}
		nh = dst
		if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok {
			nh = gw.Unmap()
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: route to %v: %w", h.Name, dst, err)
	}
	ctx, cancel := context.WithTimeout(ctx, floodResolveTimeout)
	defer cancel()
	for try := 0; ; try++ {
		mac, err := h.neighbourMAC(nh, ifindex)
		if mac != nil || err != nil {
			return mac, err
		}
		if try%25 == 0 { // every half second
			h.pokeNeighbour(ctx, nh)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("netlab: %s: MAC of next hop %v unresolved: %w", h.Name, nh, context.Cause(ctx))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// neighbourMAC looks ip up in h's neighbour table on ifindex: nil if it is
// absent or unresolved.
func (h *Host) neighbourMAC(ip netip.Addr, ifindex int) (net.HardwareAddr, error) {
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	var mac net.HardwareAddr
	err := h.withNL(func(nlh *netlink.Handle) error {
		neighs, err := nlh.NeighList(ifindex, family)
		if err != nil {
			return err
		}
		for _, n := range neighs {
			a, _ := netip.AddrFromSlice(n.IP)
			if a.Unmap() == ip && len(n.HardwareAddr) == 6 &&
				n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0 {
				mac = n.HardwareAddr
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: %s: neighbours: %w", h.Name, err)
	}
	return mac, nil
}

// pokeNeighbour sends one datagram from h to ip's discard port (9) so that
// the kernel resolves ip's MAC address; errors do not matter.
func (h *Host) pokeNeighbour(ctx context.Context, ip netip.Addr) {
	c, err := h.DialUDP(ctx, netip.Addr{}, netip.AddrPortFrom(ip, 9))
	if err != nil {
		return
	}
	c.Write([]byte{0})
	c.Close()
}

// packetSocket opens, inside h's namespace, an AF_PACKET raw socket bound
// to ifindex that only sends (protocol 0: it receives nothing) and
// bypasses the qdisc.
func (h *Host) packetSocket(ifindex int) (int, error) {
	fd := -1
	err := h.Do(func() error {
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := setupPacketSocket(s, ifindex, h.cookie); err != nil {
			unix.Close(s)
			return err
		}
		fd = s
		return nil
	})
	if err != nil {
		return -1, fmt.Errorf("netlab: %s: packet socket: %w", h.Name, err)
	}
	return fd, nil
}

func setupPacketSocket(fd, ifindex int, cookie uint64) error {
	if cookie != 0 {
		c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		if err != nil {
			return fmt.Errorf("SO_NETNS_COOKIE: %w", err)
		}
		if c != cookie {
			return errors.New("socket is not in the host's namespace")
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
		return fmt.Errorf("PACKET_QDISC_BYPASS: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		return fmt.Errorf("bind to interface %d: %w", ifindex, err)
	}
	return nil
}

// floodLoop sends the frames of gen through fd, batch by batch, until
// spec.Count are sent, spec.MaxDuration has passed or ctx ends.
func floodLoop(ctx context.Context, fd int, gen *frameGen, spec FloodSpec) (res FloodResult, _ error) {
	batch := floodBatch
	if spec.Rate > 0 {
		batch = max(1, min(floodBatch, spec.Rate/1000)) // about 1 ms per batch
	}
	mm := newMmsgBatch(gen, batch)
	start := time.Now()
	deadline := start.Add(spec.MaxDuration)
	defer func() { res.Elapsed = time.Since(start) }()
	// Frames mm.off..mm.n are forged but not sent yet.
	for res.Sent < spec.Count {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("netlab: flood stopped after %d of %d packets: %w", res.Sent, spec.Count, context.Cause(ctx))
		}
		now := time.Now()
		if !now.Before(deadline) {
			res.TimedOut = true
			return res, nil
		}
		if spec.Rate > 0 {
			due := start.Add(time.Duration(float64(res.Sent) / float64(spec.Rate) * float64(time.Second)))
			if due.After(now) {
				sleepCtx(ctx, min(due.Sub(now), deadline.Sub(now)))
				continue
			}
		}
		if mm.off == mm.n {
			mm.forge(gen, min(batch, spec.Count-res.Sent))
		}
		m, err := mm.send(fd)
		res.Sent += m
		switch {
		case err == nil:
		case errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			res.SendErrors++
			res.LastSendError = err
			sleepCtx(ctx, floodRetryPause)
		default:
			return res, fmt.Errorf("netlab: flood: sendmmsg after %d packets: %w", res.Sent, err)
		}
	}
	return res, nil
}

// sleepCtx sleeps for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// mmsgBatch is a batch of frames and the sendmmsg headers that point at
// them.
type mmsgBatch struct {
	bufs [][]byte
	iovs []unix.Iovec
	msgs []unix.Mmsghdr
	// off is the first frame not sent yet, n the number forged.
	off, n int
}

// newMmsgBatch allocates size frames, each a copy of gen's template.
func newMmsgBatch(gen *frameGen, size int) *mmsgBatch {
	fl := len(gen.tmpl)
	slab := make([]byte, size*fl)
	mm := &mmsgBatch{
		bufs: make([][]byte, size),
		iovs: make([]unix.Iovec, size),
		msgs: make([]unix.Mmsghdr, size),
	}
	for i := range size {
		b := slab[i*fl : (i+1)*fl : (i+1)*fl]
		copy(b, gen.tmpl)
		mm.bufs[i] = b
		mm.iovs[i].Base = &b[0]
		mm.iovs[i].SetLen(fl)
		mm.msgs[i].Hdr.Iov = &mm.iovs[i]
		mm.msgs[i].Hdr.SetIovlen(1)
	}
	return mm
}

// forge makes the next n frames of gen in the first n buffers.
func (mm *mmsgBatch) forge(gen *frameGen, n int) {
	for i := range n {
		gen.next(mm.bufs[i])
	}
	mm.off, mm.n = 0, n
}

// send hands the frames not sent yet to sendmmsg (without blocking) and
// returns how many the kernel took.
func (mm *mmsgBatch) send(fd int) (int, error) {
	r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd),
		uintptr(unsafe.Pointer(&mm.msgs[mm.off])), uintptr(mm.n-mm.off), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	mm.off += int(r)
	return int(r), nil
}
