package l7proxy

import (
	"encoding/binary"
	"fmt"
	"net"
	"time"

	"github.com/graylane/graylane/pkg/h2head"
	"github.com/graylane/graylane/pkg/httphead"
	"github.com/graylane/graylane/pkg/match"
)

// The proxy's own HTTP/2 server preface, for clients with prior
// knowledge (h2c). A client may wait for the server's preface before it
// sends its first HEADERS (grpc-go does: "error reading server preface"),
// while the proxy waits for that HEADERS before it picks a backend; so
// the proxy sends a preface itself, as soon as the client's preface is
// read, and takes the client's acknowledgement of it out of the bytes it
// will forward. See the package documentation ("HTTP/2 without TLS").

// serverSettings is the proxy's server preface: an empty SETTINGS frame.
// With no parameters the client keeps the protocol's initial values,
// which every client must accept, and which are those h2head reads by
// (a SETTINGS_MAX_FRAME_SIZE of h2head.MaxFrameBytes).
var serverSettings = [h2FrameHeaderLen]byte{0, 0, 0, h2FrameSettings, 0, 0, 0, 0, 0}

// More of the HTTP/2 frame header (RFC 9113, sections 4.1 and 6.5).
const (
	h2FrameSettings = 0x4
	h2FlagAck       = 0x1
)

// settingsWriteTimeout bounds the write of serverSettings: nine bytes
// into a new connection's empty send buffer, which never waits unless
// the kernel is out of memory.
const settingsWriteTimeout = time.Second

// settingsAck tracks the proxy's SETTINGS on one connection: whether it
// was sent, and the walk over the client's frames that finds and removes
// the client's acknowledgement of it.
type settingsAck struct {
	sent  bool
	acked bool // the acknowledgement was removed from the buffer
	next  int  // offset in the buffer of the next frame header to walk
}

// send writes the proxy's SETTINGS to c, once.
func (a *settingsAck) send(c net.Conn) error {
	if a.sent {
		return nil
	}
	a.sent, a.next = true, len(h2head.Preface)
	c.SetWriteDeadline(time.Now().Add(settingsWriteTimeout))
	defer c.SetWriteDeadline(time.Time{})
	if _, err := c.Write(serverSettings[:]); err != nil {
		return &cutError{ReasonClosed, fmt.Errorf("write the HTTP/2 server preface: %w", err)}
	}
	return nil
}

// strip walks the client's frames in buf (which starts with the client
// preface, or in the relay at a.next) from where the last call stopped to the last whole frame
// header, and removes the first SETTINGS acknowledgement (a SETTINGS
// frame with the ACK flag, length 0, on stream 0): the client's answer
// to serverSettings, which the backend did not send. Frames are walked
// by their lengths; a frame's payload need not have arrived for the walk
// to pass it. It returns buf, shortened by the frame removed.
func (a *settingsAck) strip(buf []byte) ([]byte, error) {
	for !a.acked && a.next+h2FrameHeaderLen <= len(buf) {
		f := buf[a.next : a.next+h2FrameHeaderLen]
		length := int(f[0])<<16 | int(f[1])<<8 | int(f[2])
		if length > h2head.MaxFrameBytes {
			// The proxy's SETTINGS left SETTINGS_MAX_FRAME_SIZE at its initial value.
			return buf, &cutError{ReasonTooLarge, fmt.Errorf("HTTP/2 frame type 0x%02x of %d bytes at offset %d; frames have at most %d",
				f[3], length, a.next, h2head.MaxFrameBytes)}
		}
		if f[3] == h2FrameSettings && f[4]&h2FlagAck != 0 {
			if stream := binary.BigEndian.Uint32(f[5:9]) & 0x7fffffff; length != 0 || stream != 0 {
				return buf, &cutError{ReasonMalformed, fmt.Errorf("HTTP/2 SETTINGS acknowledgement of %d bytes on stream %d; it is empty, on stream 0",
					length, stream)}
			}
			a.acked = true
			return append(buf[:a.next], buf[a.next+h2FrameHeaderLen:]...), nil
		}
		a.next += h2FrameHeaderLen + length
	}
	return buf, nil
}

// parseH2 reads an HTTP/2 head: it sends the proxy's SETTINGS, parses
// the first request until its header block ended, and removes the
// client's acknowledgement of the SETTINGS. It returns done when both
// happened, in either order.
func (h *head) parseH2(c net.Conn) (bool, error) {
	if err := h.ack.send(c); err != nil {
		return false, err
	}
	if !h.complete {
		r, _, err := h2head.Parse(h.buf)
		if err != nil {
			return false, parseCut(err, h2head.ErrIncomplete, h2head.ErrTooLarge)
		}
		h.req, h.stream = match.Request{Headers: r.Fields(), GRPC: r.GRPC}, r.StreamID
		h.complete = true
	}
	var err error
	h.buf, err = h.ack.strip(h.buf)
	return h.complete && h.ack.acked, err
}

// awaitingAck reports whether h is an HTTP/2 head whose client has not
// acknowledged the proxy's SETTINGS yet.
func (h *head) awaitingAck() bool { return h.proto == httphead.HTTP2 && !h.ack.acked }

// forwardable is how many bytes at the start of h.buf may go to the
// backend: all of them, unless the acknowledgement is still to come;
// then those before the first frame header not walked yet, which may be
// the acknowledgement.
func (h *head) forwardable() int {
	if !h.awaitingAck() {
		return len(h.buf)
	}
	return min(h.ack.next, len(h.buf))
}

// relayUntilAck forwards what the client sends to bc until the client's
// acknowledgement of the proxy's SETTINGS, which it drops; sent bytes of
// h.buf went to bc already. It is for a head that filled the buffer
// before the acknowledgement came (a client sending a request body at
// once, as x/net/http2 does): the buffer then holds less than a frame
// header between reads, while frames pass through whole. The head's read
// deadline still holds; each write to bc has writeTimeout.
func (h *head) relayUntilAck(c net.Conn, bc *net.TCPConn, sent int, writeTimeout time.Duration) error {
	relayed := 0
	for {
		n := copy(h.buf, h.buf[sent:])
		h.buf, h.ack.next = h.buf[:n], h.ack.next-sent
		if !h.awaitingAck() {
			return nil
		}
		m, rerr := c.Read(h.buf[n:cap(h.buf)])
		h.buf, relayed = h.buf[:n+m], relayed+m
		var err error
		if h.buf, err = h.ack.strip(h.buf); err != nil {
			return err
		}
		sent = h.forwardable()
		bc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := bc.Write(h.buf[:sent]); err != nil {
			return &cutError{ReasonDialFailed, fmt.Errorf("relay %d bytes to the backend: %w", sent, err)}
		}
		bc.SetWriteDeadline(time.Time{})
		if rerr != nil && h.awaitingAck() {
			return readCut(rerr, relayed, " (no SETTINGS acknowledgement; relayed)")
		}
	}
}
