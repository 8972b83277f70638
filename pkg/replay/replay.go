package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
)

// Launch-time choices.
const (
	LaunchTimeAuto = "auto"
	LaunchTimeOff  = "off"
)

// Options are a replay's settings.
type Options struct {
	Iface      string
	Rewrite    Rewrite
	Speed      float64 // > 0; 2 replays twice as fast
	Loops      int     // ≥ 1
	KeepMAC    bool    // send the frames' own Ethernet addresses
	LaunchTime string  // auto or off
	Progress   io.Writer
}

// Summary is what a replay did.
type Summary struct {
	File       string    `json:"file,omitempty"`
	Interface  string    `json:"interface"`
	Mode       string    `json:"mode"`
	Timing     string    `json:"timing"`
	LaunchTime string    `json:"launchTime"`
	Packets    int       `json:"packets"`
	Loops      int       `json:"loops"`
	Skipped    int       `json:"skipped"`
	Sent       uint64    `json:"sent"`
	Bytes      uint64    `json:"bytes"`
	Late       uint64    `json:"late"`
	DurationNs int64     `json:"durationNs"`
	Rate       float64   `json:"rate"`
	GapErrorNs Quantiles `json:"gapErrorNs"`
	MaxLagNs   int64     `json:"maxLagNs"`
}

// Check reports the first bad option, naming its flag.
func (o Options) Check() error {
	switch {
	case o.Speed <= 0:
		return fmt.Errorf("--speed %g: give a factor above 0, such as 1 (as recorded) or 2 (twice as fast)", o.Speed)
	case o.Loops < 1:
		return fmt.Errorf("--loop %d: give 1 or more", o.Loops)
	case o.LaunchTime != LaunchTimeAuto && o.LaunchTime != LaunchTimeOff:
		return fmt.Errorf("--launch-time %q: give auto or off", o.LaunchTime)
	}
	return nil
}

// Run replays c out of o.Iface. Everything that can fail before the first
// packet (options, interface, rewrite, next-hop addresses, the socket)
// fails before it: an error then means nothing was sent.
func Run(ctx context.Context, c *Capture, o Options) (*Summary, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if len(c.Packets) == 0 {
		return nil, errors.New("the capture holds no packet")
	}
	link, err := netlink.LinkByName(o.Iface)
	if err != nil {
		return nil, fmt.Errorf("--iface %s: no such interface on this host (replay runs on the host, and in the network namespace, that owns it): %w", o.Iface, err)
	}
	frames, skipped, err := prepare(c, link, o)
	if err != nil {
		return nil, err
	}
	if len(frames) == 0 {
		return nil, fmt.Errorf("none of the capture's %d frames carries IP: nothing to replay", len(c.Packets))
	}
	sum := &Summary{Interface: o.Iface, Packets: len(frames), Loops: o.Loops, Skipped: skipped, Timing: "busy-wait", LaunchTime: "off"}
	if o.LaunchTime == LaunchTimeAuto {
		_, sum.LaunchTime = LaunchTimeSupport(link.Attrs().Index, o.Iface)
	}
	x, err := openXSK(link.Attrs().Index, 0)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	sum.Mode = "copy"
	if x.ZeroCopy {
		sum.Mode = "zero-copy"
	}
	s := &sender{x: x, frames: frames, sched: newSchedule(times(frames), o.Speed), loops: o.Loops}
	err = s.run(ctx, o.Progress)
	s.summarize(sum)
	return sum, err
}

// frame is a packet ready to send.
type frame struct {
	at   time.Duration
	data []byte
}

func times(frames []frame) []time.Duration {
	at := make([]time.Duration, len(frames))
	for i, f := range frames {
		at[i] = f.at
	}
	return at
}

// prepare rewrites copies of c's frames and sets their Ethernet addresses.
// Frames without IP are skipped unless they go as they are (--keep-mac and
// no rewrite): replay cannot address them.
func prepare(c *Capture, link netlink.Link, o Options) ([]frame, int, error) {
	var src net.HardwareAddr
	if !o.KeepMAC {
		src = link.Attrs().HardwareAddr
		if len(src) != 6 {
			return nil, 0, fmt.Errorf("--iface %s has no Ethernet address: replay sends Ethernet frames", o.Iface)
		}
	}
	raw := o.KeepMAC && o.Rewrite.IsZero()
	nb := newNeighbours(link)
	frames := make([]frame, 0, len(c.Packets))
	skipped := 0
	for i, p := range c.Packets {
		data := append([]byte(nil), p.Data...)
		dst, err := o.Rewrite.Apply(data)
		if err != nil {
			return nil, 0, fmt.Errorf("packet %d: %w", i+1, err)
		}
		if !dst.IsValid() && !raw {
			skipped++
			continue
		}
		if !o.KeepMAC {
			mac, err := nb.mac(dst)
			if err != nil {
				return nil, 0, fmt.Errorf("packet %d: %w", i+1, err)
			}
			copy(data[0:6], mac)
			copy(data[6:12], src)
		}
		frames = append(frames, frame{at: p.At, data: data})
	}
	// The schedule starts at the first frame sent.
	if len(frames) > 0 {
		first := frames[0].at
		for i := range frames {
			frames[i].at -= first
		}
	}
	return frames, skipped, nil
}

// dstOf is the destination address of a frame, for tests.
func dstOf(frame []byte) netip.Addr {
	ip, v := ipOffset(frame)
	if v == 0 {
		return netip.Addr{}
	}
	p, err := parseIP(frame, ip)
	if err != nil {
		return netip.Addr{}
	}
	return parseAddr(frame, p)
}
