package replay

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Packet is one frame of a capture and when it was recorded, relative to
// the capture's first packet.
type Packet struct {
	At   time.Duration
	Data []byte
}

// Capture is a whole capture file in memory: replay must not read the
// disk while it keeps time.
type Capture struct {
	Format  string // "pcap" or "pcapng"
	Packets []Packet
}

// Span is the time from the first packet to the last.
func (c *Capture) Span() time.Duration {
	if len(c.Packets) == 0 {
		return 0
	}
	return c.Packets[len(c.Packets)-1].At
}

// MaxFrame is the largest frame replay sends: one UMEM frame.
const MaxFrame = frameSize

// packetSource is what both pcapgo readers offer.
type packetSource interface {
	ReadPacketData() ([]byte, gopacket.CaptureInfo, error)
}

// Read reads a pcap or pcapng capture of Ethernet frames. A truncated file
// or a bad block is an error naming the packet (and for pcap the byte
// offset) where it went wrong; pcapng blocks of unknown types are skipped.
func Read(r io.Reader) (*Capture, error) {
	br := bufio.NewReaderSize(r, 1<<16)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, fmt.Errorf("not a capture file: %d bytes, shorter than a pcap or pcapng header", len(magic))
	}
	var src packetSource
	c := &Capture{}
	linkType := func(gopacket.CaptureInfo) layers.LinkType { return layers.LinkTypeEthernet }
	if binary.BigEndian.Uint32(magic) == 0x0a0d0d0a {
		c.Format = "pcapng"
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{})
		if err != nil {
			return nil, fmt.Errorf("pcapng: bad section or interface block at the start of the file: %w", explain(err))
		}
		src = ng
		linkType = func(ci gopacket.CaptureInfo) layers.LinkType {
			intf, err := ng.Interface(ci.InterfaceIndex)
			if err != nil {
				return layers.LinkTypeNull
			}
			return intf.LinkType
		}
	} else {
		c.Format = "pcap"
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("not a pcap or pcapng file (magic %#x): %w", magic, explain(err))
		}
		src = pr
		lt := pr.LinkType()
		linkType = func(gopacket.CaptureInfo) layers.LinkType { return lt }
	}
	if err := c.readPackets(src, linkType); err != nil {
		return nil, err
	}
	return c, nil
}

// readPackets reads every packet of src into c.
func (c *Capture) readPackets(src packetSource, linkType func(gopacket.CaptureInfo) layers.LinkType) error {
	var first time.Time
	offset := int64(24) // where packet i starts in a pcap file: after the file header and each record
	for i := 1; ; i++ {
		data, ci, err := src.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.readError(i, offset, err)
		}
		if lt := linkType(ci); lt != layers.LinkTypeEthernet {
			return fmt.Errorf("%s packet %d: link type %s: replay sends Ethernet frames only", c.Format, i, lt)
		}
		if ci.CaptureLength < ci.Length {
			return fmt.Errorf("%s packet %d: %d of its %d bytes were captured: replay needs whole packets (capture with --payload)", c.Format, i, ci.CaptureLength, ci.Length)
		}
		if len(data) > MaxFrame {
			return fmt.Errorf("%s packet %d: %d bytes, more than the %d replay sends", c.Format, i, len(data), MaxFrame)
		}
		if i == 1 {
			first = ci.Timestamp
		}
		at := ci.Timestamp.Sub(first)
		if n := len(c.Packets); n > 0 && at < c.Packets[n-1].At {
			return fmt.Errorf("%s packet %d: recorded %v before packet %d: sort the file by time (reordercap)", c.Format, i, c.Packets[n-1].At-at, i-1)
		}
		c.Packets = append(c.Packets, Packet{At: at, Data: bytes.Clone(data)})
		offset += 16 + int64(len(data))
	}
}

// readError says where a capture went wrong: the packet, and for pcap the
// byte offset where its record starts.
func (c *Capture) readError(i int, offset int64, err error) error {
	if c.Format == "pcap" {
		return fmt.Errorf("pcap packet %d at byte %d: %w", i, offset, explain(err))
	}
	return fmt.Errorf("pcapng packet %d (or a block before it): %w", i, explain(err))
}

// explain turns the readers' terse errors into what happened.
func explain(err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fmt.Errorf("the file is truncated (%w)", err)
	}
	return err
}
