package l7proxy

import (
	"encoding/binary"
	"strconv"
	"time"

	"golang.org/x/net/http2/hpack"
)

// HTTP/2 frames and flags the response walk reads (RFC 9113, section 6).
const (
	h2FrameData         = 0x0
	h2FrameHeaders      = 0x1
	h2FramePushPromise  = 0x5
	h2FrameContinuation = 0x9

	h2FlagEndStream  = 0x1
	h2FlagEndHeaders = 0x4
	h2FlagPadded     = 0x8
	h2FlagPriority   = 0x20
)

// h2MaxBlock bounds a header block the walk collects (with its frames'
// padding); past it the walk gives up: what it has not reported stays
// unknown.
const h2MaxBlock = 16 << 10

// h2Response follows the frames a backend sends on an HTTP/2 connection,
// for the first request's stream: when its response's first HEADERS
// frame began, its :status, and its grpc-status, found in a Trailers-Only
// response's single header block or in the trailers (the stream's second
// block). Every header block of the connection is decoded, in order:
// HPACK's dynamic table belongs to the connection, not to a stream.
type h2Response struct {
	stream uint32
	dec    *hpack.Decoder

	hdr   [h2FrameHeaderLen]byte
	nhdr  int
	typ   byte
	flags byte
	id    uint32 // the current frame's stream
	left  int    // payload bytes of the current frame still to come
	frame []byte // the current HEADERS/CONTINUATION frame's payload

	block      []byte // the header block being collected
	blockID    uint32
	blockEnds  bool // its HEADERS frame ended the stream
	blocksSeen int  // header blocks of r.stream decoded

	// What was found; reported by the caller.
	headersAt  time.Time // zero until the stream's first HEADERS began
	status     int       // :status of the first block, 0 if unknown
	grpc       bool      // content-type application/grpc
	grpcStatus int       // -1 until seen
	done       bool      // nothing more to learn
}

func newH2Response(stream uint32) *h2Response {
	dec := hpack.NewDecoder(4096, nil)
	// The encoder is the backend's, sized by the client's SETTINGS, which
	// the walk does not read: allow what any client may ask for.
	dec.SetAllowedMaxDynamicTableSize(1 << 16)
	dec.SetMaxStringLength(h2MaxBlock)
	return &h2Response{stream: stream, dec: dec, grpcStatus: -1}
}

// feed walks b. It returns at the end of b, or when done.
func (h *h2Response) feed(b []byte) {
	for len(b) > 0 && !h.done {
		if h.nhdr < h2FrameHeaderLen {
			n := copy(h.hdr[h.nhdr:], b)
			h.nhdr += n
			b = b[n:]
			if h.nhdr == h2FrameHeaderLen {
				h.beginFrame()
			}
			continue
		}
		n := min(h.left, len(b))
		if h.collecting() {
			h.frame = append(h.frame, b[:n]...)
		}
		h.left -= n
		b = b[n:]
		if h.left == 0 {
			h.endFrame()
		}
	}
}

func (h *h2Response) collecting() bool {
	return h.typ == h2FrameHeaders || h.typ == h2FrameContinuation
}

// beginFrame reads the frame header in h.hdr.
func (h *h2Response) beginFrame() {
	h.left = int(h.hdr[0])<<16 | int(h.hdr[1])<<8 | int(h.hdr[2])
	h.typ, h.flags = h.hdr[3], h.hdr[4]
	h.id = binary.BigEndian.Uint32(h.hdr[5:9]) & 0x7fffffff
	h.frame = h.frame[:0]
	switch {
	case h.typ == h2FramePushPromise:
		h.done = true // a block the walk would have to decode too: give up
	case h.collecting() && len(h.block)+h.left > h2MaxBlock:
		h.done = true
	case h.typ == h2FrameHeaders && h.id == h.stream && h.headersAt.IsZero():
		h.headersAt = time.Now()
	}
	if h.left == 0 && !h.done {
		h.endFrame()
	}
}

// endFrame handles a frame whose payload is complete.
func (h *h2Response) endFrame() {
	h.nhdr = 0
	switch h.typ {
	case h2FrameData:
		if h.id == h.stream && h.flags&h2FlagEndStream != 0 {
			h.done = true // the stream ended without trailers
		}
		return
	case h2FrameHeaders:
		frag, ok := headersFragment(h.frame, h.flags)
		if !ok {
			h.done = true
			return
		}
		h.block = append(h.block[:0], frag...)
		h.blockID, h.blockEnds = h.id, h.flags&h2FlagEndStream != 0
	case h2FrameContinuation:
		h.block = append(h.block, h.frame...)
	default:
		return
	}
	if h.flags&h2FlagEndHeaders != 0 {
		h.endBlock()
	}
}

// headersFragment strips a HEADERS frame's padding and priority.
func headersFragment(p []byte, flags byte) ([]byte, bool) {
	pad := 0
	if flags&h2FlagPadded != 0 {
		if len(p) < 1 {
			return nil, false
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags&h2FlagPriority != 0 {
		if len(p) < 5 {
			return nil, false
		}
		p = p[5:]
	}
	if pad > len(p) {
		return nil, false
	}
	return p[:len(p)-pad], true
}

// endBlock decodes a complete header block.
func (h *h2Response) endBlock() {
	fields, err := h.dec.DecodeFull(h.block)
	h.block = h.block[:0]
	if err != nil {
		h.done = true
		return
	}
	if h.blockID != h.stream {
		return
	}
	h.blocksSeen++
	for _, f := range fields {
		switch f.Name {
		case ":status":
			if h.blocksSeen == 1 {
				h.status, _ = strconv.Atoi(f.Value)
			}
		case "content-type":
			h.grpc = h.grpc || isGRPCContentType(f.Value)
		case "grpc-status":
			if code, err := strconv.Atoi(f.Value); err == nil && code >= 0 {
				h.grpcStatus = code
			}
		}
	}
	if h.blocksSeen >= 2 || h.blockEnds || !h.grpc || h.grpcStatus >= 0 {
		h.done = true // trailers read, or none to come that matter
	}
}

// isGRPCContentType: application/grpc, with or without a +format suffix
// or parameters.
func isGRPCContentType(v string) bool {
	const ct = "application/grpc"
	if len(v) < len(ct) || v[:len(ct)] != ct {
		return false
	}
	return len(v) == len(ct) || v[len(ct)] == '+' || v[len(ct)] == ';'
}
