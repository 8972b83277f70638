package capture

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"
)

// The merge writes with pcapgo's NgWriter rather than this package's
// Writer: the Writer composes every name as "node:iface", describes only
// Ethernet interfaces, and checks a node's accounting as it is recorded
// (no statistics with fewer drops than the packets before them reported),
// which statistics replayed after all packets would fail by design. The
// merge copies what its sources' Writers already checked.

// start writes the section header and the interfaces described so far:
// every source has a packet waiting or has ended, so these are all the
// interfaces described before any packet, in the order of the sources.
func (m *merger) start() error {
	if len(m.ifaces) == 0 {
		return errors.New("capture: merge: no source described an interface: there is nothing to write")
	}
	out, err := pcapgo.NewNgWriterInterface(m.w, m.ifaces[0], sectionOptions())
	if err != nil {
		m.broken = true
		return fmt.Errorf("capture: merge: write section header: %w", err)
	}
	for _, i := range m.ifaces[1:] {
		if _, err := out.AddInterface(i); err != nil {
			m.broken = true
			return fmt.Errorf("capture: merge: describe interface %s: %w", i.Name, err)
		}
	}
	m.out, m.dirty = out, true
	return nil
}

// addInterface makes rec, an interface of s, an interface of the output,
// and describes it there at once if the output has started.
func (m *merger) addInterface(s *mergeSource, rec record) error {
	i := pcapgo.NgInterface{
		Name:                mergedName(s.Node, rec.iface, rec.desc.Name),
		LinkType:            rec.desc.LinkType,
		SnapLength:          rec.desc.SnapLength,
		TimestampResolution: 9,
	}
	s.ifaces = append(s.ifaces, len(m.ifaces))
	m.ifaces = append(m.ifaces, i)
	s.stats.Interfaces++
	if m.out == nil {
		return nil
	}
	m.dirty = true
	if _, err := m.out.AddInterface(i); err != nil {
		m.broken = true
		return fmt.Errorf("capture: merge: describe interface %s: %w", i.Name, err)
	}
	return nil
}

// mergedName is the output's name of interface n of node, called name in
// the node's stream: "node:name", as a node's own stream names it (its
// Writer put "node:" in front already); "node:ifN" if it had no name.
func mergedName(node string, n int, name string) string {
	name = strings.TrimPrefix(name, node+":")
	if name == "" {
		name = fmt.Sprintf("if%d", n)
	}
	return node + ":" + name
}

// writePacket writes the packet waiting in s.
func (m *merger) writePacket(s *mergeSource) error {
	rec := s.head
	s.head = nil
	ci := gopacket.CaptureInfo{
		Timestamp:      unixTime(rec.at),
		CaptureLength:  len(rec.data),
		Length:         rec.origLen,
		InterfaceIndex: s.ifaces[rec.iface],
	}
	if err := m.out.WritePacketWithOptions(ci, rec.data, rec.opts); err != nil {
		m.broken = true
		return fmt.Errorf("capture: merge: write a packet of node %s: %w", s.Node, err)
	}
	s.stats.Packets++
	m.dirty = true
	return nil
}

// finish writes the statistics blocks and flushes, unless the output
// never started or failed; it returns err with what went wrong on the way.
func (m *merger) finish(err error) error {
	if m.out == nil || m.broken {
		return err
	}
	for _, p := range m.stats {
		if werr := m.out.WriteInterfaceStats(p.iface, p.stats); werr != nil {
			m.broken = true
			return errors.Join(err, fmt.Errorf("capture: merge: write statistics of node %s: %w", p.src.Node, werr))
		}
		p.src.stats.Statistics++
		m.dirty = true
	}
	m.stats = nil
	return errors.Join(err, m.flush())
}

// flush writes out what was written since the last flush.
func (m *merger) flush() error {
	if m.out == nil || !m.dirty || m.broken {
		return nil
	}
	if err := m.out.Flush(); err != nil {
		m.broken = true
		return fmt.Errorf("capture: merge: write output: %w", err)
	}
	m.dirty = false
	return nil
}

func unixTime(ns int64) time.Time { return time.Unix(0, ns) }
