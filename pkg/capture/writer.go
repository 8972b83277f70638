package capture

import (
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Direction is the way a packet travelled relative to the service. It is
// written as the direction bits (0-1) of the packet's epb_flags.
type Direction uint8

// The zero Direction is not valid: every captured packet has a known way.
const (
	// Inbound packets go from the client toward the VIP.
	Inbound Direction = 1
	// Outbound packets are the replies, toward the client.
	Outbound Direction = 2
)

func (d Direction) String() string {
	switch d {
	case Inbound:
		return "inbound"
	case Outbound:
		return "outbound"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// epbFlag is the pcapng direction code: 01 inbound, 10 outbound.
func (d Direction) epbFlag() pcapgo.NgEpbFlag {
	if d == Inbound {
		return pcapgo.NgEpbFlagDirectionInbound
	}
	return pcapgo.NgEpbFlagDirectionOutbound
}

// Interface is one interface of one node that a capture covers.
type Interface struct {
	Node string // node name, e.g. "gw1"; may not contain ':'
	Name string // interface name on that node, e.g. "eth0"
	// SnapLen is the most bytes kept of each packet; 0 keeps whole packets.
	SnapLen int
}

// pcapngName is the interface's name in the file, "node:iface".
func (i Interface) pcapngName() string { return i.Node + ":" + i.Name }

// Packet is one captured packet.
type Packet struct {
	Iface     int       // index into the interfaces given to NewWriter
	Time      time.Time // wall-clock time the packet was seen (see Clock)
	Direction Direction
	Data      []byte // the bytes kept, from the Ethernet header on
	OrigLen   int    // the packet's length on the wire, ≥ len(Data)
	// DroppedBefore counts the packets of this interface lost (sampled but
	// not captured) between the previous captured one and this one.
	DroppedBefore uint64
}

// Stats are an interface's cumulative counters, written as an Interface
// Statistics Block.
type Stats struct {
	Start, End time.Time // the period the counters cover
	Seen       uint64    // packets sampled (isb_ifrecv)
	Dropped    uint64    // packets sampled but lost (isb_ifdrop)
	// Final marks the statistics written after the interface's last packet.
	// Then Seen must equal the packets written plus Dropped: the capture's
	// accounting is checked where it is recorded. No packet of the
	// interface may follow.
	Final bool
}

// Writer writes one pcapng capture. It is safe for concurrent use.
type Writer struct {
	mu     sync.Mutex
	ng     *pcapgo.NgWriter
	ifaces []ifaceState
	closed bool
}

// ifaceState is what the writer knows of one interface so far.
type ifaceState struct {
	Interface
	captured  uint64 // packets written
	dropped   uint64 // sum of their DroppedBefore
	lastStats *Stats // the last statistics written, if any
}

// errClosed is returned for any write after Close.
var errClosed = errors.New("capture: writer is closed")

// NewWriter starts a capture on w: it writes the section header and one
// interface description per entry of ifaces, in order (a Packet's Iface
// indexes them). Output is buffered; Flush or Close writes it out. Bad
// interfaces are an error and nothing is written.
func NewWriter(w io.Writer, ifaces []Interface) (*Writer, error) {
	if err := checkInterfaces(ifaces); err != nil {
		return nil, err
	}
	ng, err := pcapgo.NewNgWriterInterface(w, ngInterface(ifaces[0]), sectionOptions())
	if err != nil {
		return nil, fmt.Errorf("capture: write section header: %w", err)
	}
	for _, i := range ifaces[1:] {
		if _, err := ng.AddInterface(ngInterface(i)); err != nil {
			return nil, fmt.Errorf("capture: describe interface %s: %w", i.pcapngName(), err)
		}
	}
	cw := &Writer{ng: ng, ifaces: make([]ifaceState, len(ifaces))}
	for n, i := range ifaces {
		cw.ifaces[n].Interface = i
	}
	return cw, nil
}

// sectionOptions is the section header of every file this package
// writes: a capture's and a merge's.
func sectionOptions() pcapgo.NgWriterOptions {
	return pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Application: "graylane", OS: runtime.GOOS, Hardware: runtime.GOARCH,
	}}
}

// ngInterface is the Interface Description Block of i. The resolution is
// always nanoseconds: pcapgo writes if_tsresol 9 for every interface.
func ngInterface(i Interface) pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name:                i.pcapngName(),
		OS:                  runtime.GOOS,
		LinkType:            layers.LinkTypeEthernet,
		SnapLength:          uint32(i.SnapLen),
		TimestampResolution: 9,
	}
}

// checkInterfaces rejects an empty list, empty or ambiguous names,
// duplicates and snaplens out of range.
func checkInterfaces(ifaces []Interface) error {
	if len(ifaces) == 0 {
		return errors.New("capture: no interfaces: a capture covers at least one node's interface")
	}
	seen := make(map[string]int, len(ifaces))
	for n, i := range ifaces {
		switch {
		case i.Node == "" || i.Name == "":
			return fmt.Errorf("capture: interface %d: node %q and name %q must both be set", n, i.Node, i.Name)
		case strings.Contains(i.Node, ":"):
			return fmt.Errorf("capture: interface %d: node %q contains ':', which separates node and interface in the file", n, i.Node)
		case i.SnapLen < 0 || int64(i.SnapLen) > math.MaxUint32:
			return fmt.Errorf("capture: interface %s: snaplen %d out of range (0 keeps whole packets)", i.pcapngName(), i.SnapLen)
		}
		if first, dup := seen[i.pcapngName()]; dup {
			return fmt.Errorf("capture: interfaces %d and %d are both %s", first, n, i.pcapngName())
		}
		seen[i.pcapngName()] = n
	}
	return nil
}

// WritePacket appends p as an Enhanced Packet Block. A packet that names
// an unknown interface, has no data, more data than OrigLen or the
// interface's snaplen, no direction or no time is an error, and nothing is
// written.
func (w *Writer) WritePacket(p Packet) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, err := w.packetIface(p)
	if err != nil {
		return err
	}
	ci := gopacket.CaptureInfo{
		Timestamp:      p.Time,
		CaptureLength:  len(p.Data),
		Length:         p.OrigLen,
		InterfaceIndex: p.Iface,
	}
	opts := pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: p.Direction.epbFlag()}}
	if p.DroppedBefore > 0 {
		opts.DropCount = &p.DroppedBefore
	}
	if err := w.ng.WritePacketWithOptions(ci, p.Data, opts); err != nil {
		return fmt.Errorf("capture: write packet on %s: %w", st.pcapngName(), err)
	}
	st.captured++
	st.dropped += p.DroppedBefore
	return nil
}

// packetIface checks p and returns the state of its interface.
func (w *Writer) packetIface(p Packet) (*ifaceState, error) {
	if w.closed {
		return nil, errClosed
	}
	if p.Iface < 0 || p.Iface >= len(w.ifaces) {
		return nil, fmt.Errorf("capture: packet on interface %d, but the capture has %d (0..%d)", p.Iface, len(w.ifaces), len(w.ifaces)-1)
	}
	st := &w.ifaces[p.Iface]
	name := st.pcapngName()
	switch {
	case st.lastStats != nil && st.lastStats.Final:
		return nil, fmt.Errorf("capture: packet on %s after its final statistics", name)
	case len(p.Data) == 0:
		return nil, fmt.Errorf("capture: packet on %s has no data", name)
	case p.OrigLen < len(p.Data) || int64(p.OrigLen) > math.MaxUint32:
		return nil, fmt.Errorf("capture: packet on %s: original length %d must be at least the %d bytes captured (and fit 32 bits)", name, p.OrigLen, len(p.Data))
	case st.SnapLen > 0 && len(p.Data) > st.SnapLen:
		return nil, fmt.Errorf("capture: packet on %s: %d bytes captured exceed the snaplen %d; truncate it", name, len(p.Data), st.SnapLen)
	case p.Direction != Inbound && p.Direction != Outbound:
		return nil, fmt.Errorf("capture: packet on %s: direction %v is neither inbound nor outbound", name, p.Direction)
	case !afterEpoch(p.Time):
		return nil, fmt.Errorf("capture: packet on %s: time %v is not a wall-clock time after 1970", name, p.Time)
	}
	return st, nil
}

// afterEpoch reports whether t is a time pcapng can hold with nanosecond
// resolution: after 1970 and, as Unix nanoseconds, within int64.
func afterEpoch(t time.Time) bool {
	return t.After(time.Unix(0, 0)) && t.Before(time.Unix(0, math.MaxInt64))
}

// WriteStats appends s as an Interface Statistics Block for interface
// iface (isb_starttime, isb_endtime, isb_ifrecv, isb_ifdrop; its timestamp
// is End). Counters are cumulative: they may not decrease from one block
// to the next. Bad statistics are an error, and nothing is written.
func (w *Writer) WriteStats(iface int, s Stats) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	st, err := w.statsIface(iface, s)
	if err != nil {
		return err
	}
	ng := pcapgo.NgInterfaceStatistics{
		LastUpdate:      s.End,
		StartTime:       s.Start,
		EndTime:         s.End,
		PacketsReceived: s.Seen,
		PacketsDropped:  s.Dropped,
	}
	if err := w.ng.WriteInterfaceStats(iface, ng); err != nil {
		return fmt.Errorf("capture: write statistics of %s: %w", st.pcapngName(), err)
	}
	st.lastStats = &s
	return nil
}

// statsIface checks s against what was written on iface and returns the
// interface's state.
func (w *Writer) statsIface(iface int, s Stats) (*ifaceState, error) {
	if w.closed {
		return nil, errClosed
	}
	if iface < 0 || iface >= len(w.ifaces) {
		return nil, fmt.Errorf("capture: statistics of interface %d, but the capture has %d (0..%d)", iface, len(w.ifaces), len(w.ifaces)-1)
	}
	st := &w.ifaces[iface]
	name := st.pcapngName()
	prev := st.lastStats
	switch {
	case prev != nil && prev.Final:
		return nil, fmt.Errorf("capture: statistics of %s after its final ones", name)
	case !afterEpoch(s.Start) || !afterEpoch(s.End) || s.End.Before(s.Start):
		return nil, fmt.Errorf("capture: statistics of %s: period %v..%v is not a wall-clock interval after 1970", name, s.Start, s.End)
	case s.Dropped > s.Seen:
		return nil, fmt.Errorf("capture: statistics of %s: %d dropped of only %d seen", name, s.Dropped, s.Seen)
	case prev != nil && (s.Seen < prev.Seen || s.Dropped < prev.Dropped || s.End.Before(prev.End)):
		return nil, fmt.Errorf("capture: statistics of %s went back (seen %d→%d, dropped %d→%d); counters are cumulative", name, prev.Seen, s.Seen, prev.Dropped, s.Dropped)
	case s.Dropped < st.dropped:
		return nil, fmt.Errorf("capture: statistics of %s: %d dropped, but the packets written already report %d", name, s.Dropped, st.dropped)
	case s.Final && st.captured+s.Dropped != s.Seen:
		return nil, fmt.Errorf("capture: final statistics of %s do not add up: %d captured + %d dropped ≠ %d seen", name, st.captured, s.Dropped, s.Seen)
	}
	return st, nil
}

// Flush writes out everything buffered.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	if err := w.ng.Flush(); err != nil {
		return fmt.Errorf("capture: flush: %w", err)
	}
	return nil
}

// Close flushes the capture; later writes fail. It does not close the
// io.Writer given to NewWriter.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	w.closed = true
	if err := w.ng.Flush(); err != nil {
		return fmt.Errorf("capture: flush: %w", err)
	}
	return nil
}
