// Package h2head reads the first request of an HTTP/2 connection whose
// client speaks HTTP/2 with prior knowledge (cleartext h2, gRPC without
// TLS): the client connection preface, the frames before the first
// HEADERS frame, and that HEADERS frame with its CONTINUATION frames. It
// decodes the header block with a fresh HPACK decoder, so the agent can
// decide the connection's pool by pseudo-headers, headers and gRPC
// metadata before it connects to a backend. It never writes: the caller
// forwards the bytes it buffered, unchanged, to the backend it chose, and
// every later stream of the connection goes there too.
//
// Bounds: at most MaxBytes from the preface to the end of the header block;
// frames of at most MaxFrameBytes (the initial SETTINGS_MAX_FRAME_SIZE,
// which the agent never raises: the only SETTINGS it sends, l7proxy's h2c
// server preface, is empty and so keeps every default);
// a decoded header list of at most MaxHeaderListBytes, counted as RFC 9113
// counts it; strings of at most MaxStringBytes; and a dynamic table of
// MaxTableBytes, the initial SETTINGS_HEADER_TABLE_SIZE the client's
// encoder must assume. The client's own SETTINGS_HEADER_TABLE_SIZE sizes
// the table of its decoder, for responses, and so is ignored here.
//
// Before the first HEADERS frame it tolerates SETTINGS (which must come
// first, as RFC 9113 section 3.4 requires), WINDOW_UPDATE and PING on
// stream 0, PRIORITY, and frames of unknown types; anything else there is
// an error. HEADERS frames may be PADDED and carry PRIORITY. It does not
// read HTTP/2 over TLS (the agent does not terminate TLS: see package
// tlshello), nor an h2c upgrade, which starts as an HTTP/1.1 request (see
// package httphead).
package h2head

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Bounds of what Parse reads.
const (
	MaxBytes           = 32 << 10
	MaxFrameBytes      = 16384
	MaxHeaderListBytes = 16 << 10
	MaxStringBytes     = 8 << 10
	MaxTableBytes      = 4096
)

// Preface is the client connection preface (RFC 9113, section 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// Errors of Parse; the errors returned wrap one of these.
var (
	// ErrIncomplete means the first header block has not ended yet: read
	// more bytes.
	ErrIncomplete = errors.New("incomplete HTTP/2 request head: read more bytes")
	// ErrTooLarge means a bound was passed before the header block ended.
	ErrTooLarge = errors.New("HTTP/2 request head too large")
	// ErrMalformed means the bytes break HTTP/2 or HPACK.
	ErrMalformed = errors.New("malformed HTTP/2 request head")
)

// Frame types and flags (RFC 9113, section 6).
const (
	frameData         = 0x0
	frameHeaders      = 0x1
	framePriority     = 0x2
	frameRSTStream    = 0x3
	frameSettings     = 0x4
	framePushPromise  = 0x5
	framePing         = 0x6
	frameGoAway       = 0x7
	frameWindowUpdate = 0x8
	frameContinuation = 0x9

	flagEndStream  = 0x1
	flagAck        = 0x1
	flagEndHeaders = 0x4
	flagPadded     = 0x8
	flagPriority   = 0x20

	frameHeaderBytes = 9
)

// Request is the first request of an HTTP/2 connection.
type Request struct {
	StreamID  uint32
	Method    string
	Scheme    string
	Authority string
	Path      string
	// Headers maps the regular field names (lowercase, as HTTP/2 sends
	// them) to their values, in order.
	Headers map[string][]string
	// EndStream is true when the request has no body.
	EndStream bool
	// GRPC is true when content-type is application/grpc or a subtype of
	// it (application/grpc+proto).
	GRPC bool
}

// Fields returns the request's headers together with its pseudo-headers
// (":method", ":scheme", ":authority", ":path", those present). The result
// is a new map.
func (r Request) Fields() map[string][]string {
	fields := make(map[string][]string, len(r.Headers)+4)
	for name, values := range r.Headers {
		fields[name] = values
	}
	for name, value := range map[string]string{
		":method": r.Method, ":scheme": r.Scheme, ":authority": r.Authority, ":path": r.Path,
	} {
		if value != "" {
			fields[name] = []string{value}
		}
	}
	return fields
}

// frame is one frame's header and payload.
type frame struct {
	length  int
	typ     byte
	flags   byte
	stream  uint32
	payload []byte
}

// Parse reads the preface and frames at the start of buf up to the end of
// the first header block. It returns the request and the bytes it took.
// Errors wrap ErrIncomplete, ErrTooLarge or ErrMalformed; on error
// consumed is 0.
func Parse(buf []byte) (req Request, consumed int, err error) {
	if err := checkPreface(buf); err != nil {
		return Request{}, 0, err
	}
	r := reader{buf: buf, pos: len(Preface)}
	first, err := r.untilHeaders()
	if err != nil {
		return Request{}, 0, err
	}
	block, err := r.headerBlock(first)
	if err != nil {
		return Request{}, 0, err
	}
	req, err = decodeRequest(block)
	if err != nil {
		return Request{}, 0, err
	}
	req.StreamID = first.stream
	req.EndStream = first.flags&flagEndStream != 0
	return req, r.pos, nil
}

func checkPreface(buf []byte) error {
	n := min(len(buf), len(Preface))
	if !bytes.Equal(buf[:n], []byte(Preface[:n])) {
		return fmt.Errorf("%w: the connection does not start with the HTTP/2 client preface %q", ErrMalformed, Preface)
	}
	if n < len(Preface) {
		return ErrIncomplete
	}
	return nil
}

// reader walks the frames of buf.
type reader struct {
	buf    []byte
	pos    int
	frames int
}

// next returns the frame at pos and moves past it.
func (r *reader) next() (frame, error) {
	rest := r.buf[r.pos:]
	if len(rest) < frameHeaderBytes {
		return frame{}, r.incomplete(frameHeaderBytes)
	}
	f := frame{
		length: int(rest[0])<<16 | int(rest[1])<<8 | int(rest[2]),
		typ:    rest[3],
		flags:  rest[4],
		stream: binary.BigEndian.Uint32(rest[5:9]) & 0x7fffffff,
	}
	r.frames++
	if f.length > MaxFrameBytes {
		return frame{}, fmt.Errorf("%w: frame %d (%s) is %d bytes long; frames have at most %d",
			ErrTooLarge, r.frames, typeName(f.typ), f.length, MaxFrameBytes)
	}
	if len(rest) < frameHeaderBytes+f.length {
		return frame{}, r.incomplete(frameHeaderBytes + f.length)
	}
	f.payload = rest[frameHeaderBytes : frameHeaderBytes+f.length]
	r.pos += frameHeaderBytes + f.length
	return f, nil
}

// incomplete is ErrIncomplete, or ErrTooLarge when the need bytes wanted
// at pos would pass MaxBytes.
func (r *reader) incomplete(need int) error {
	if r.pos+need > MaxBytes {
		return fmt.Errorf("%w: no end of the first header block in %d bytes", ErrTooLarge, MaxBytes)
	}
	return ErrIncomplete
}

// untilHeaders checks the frames before the first HEADERS frame and
// returns that frame.
func (r *reader) untilHeaders() (frame, error) {
	for {
		f, err := r.next()
		if err != nil {
			return frame{}, err
		}
		if r.frames == 1 && (f.typ != frameSettings || f.flags&flagAck != 0) {
			return frame{}, fmt.Errorf("%w: the preface is followed by %s, not SETTINGS", ErrMalformed, describe(f))
		}
		if r.pos > MaxBytes {
			return frame{}, fmt.Errorf("%w: no HEADERS frame in the first %d bytes", ErrTooLarge, MaxBytes)
		}
		if f.typ == frameHeaders {
			return f, checkHeadersFrame(f)
		}
		if err := checkControlFrame(f); err != nil {
			return frame{}, fmt.Errorf("%w: frame %d: %w", ErrMalformed, r.frames, err)
		}
	}
}
