package l7proxy

import (
	"encoding/binary"
	"time"

	"github.com/graylane/graylane/pkg/httphead"
)

// PeekLimit bounds the backend bytes a Splicer shows Conns.Peek: past it,
// no first response is reported.
const PeekLimit = 64 << 10

// HTTP/2 frame header (RFC 9113, section 4.1).
const (
	h2FrameHeaderLen = 9
	h2FrameHeaders   = 0x1
)

// responsePeek finds a connection's first response in the backend's
// bytes and reports it to the Observer. For HTTP/1.x and TLS that is the
// first byte (the status line; the ServerHello). For HTTP/2 it is the
// first HEADERS frame of the client's first stream: a server's first
// bytes are its SETTINGS, sent before it has read the request.
type responsePeek struct {
	obs    Observer
	d      Decision
	sent   time.Time
	proto  httphead.Protocol
	stream uint32 // HTTP/2: the first request's stream

	// The HTTP/2 frame walk, across reads.
	hdr  [h2FrameHeaderLen]byte
	nhdr int // bytes of hdr filled
	skip int // payload bytes of the current frame still to pass
}

// peek is Conns.Peek: it returns true once it has reported.
func (r *responsePeek) peek(b []byte) bool {
	if r.proto != httphead.HTTP2 {
		status := 0
		if r.proto == httphead.HTTP1 {
			status = statusCode(b)
		}
		r.obs.FirstResponse(r.d, time.Since(r.sent), status)
		return true
	}
	if r.walkH2(b) {
		r.obs.FirstResponse(r.d, time.Since(r.sent), 0)
		return true
	}
	return false
}

// walkH2 passes over HTTP/2 frames in b and reports whether the HEADERS
// frame of r.stream began. Every pass takes at least one byte of b.
func (r *responsePeek) walkH2(b []byte) bool {
	for len(b) > 0 {
		if r.skip > 0 {
			n := min(r.skip, len(b))
			r.skip -= n
			b = b[n:]
			continue
		}
		n := copy(r.hdr[r.nhdr:], b)
		r.nhdr += n
		b = b[n:]
		if r.nhdr < h2FrameHeaderLen {
			return false
		}
		r.nhdr = 0
		length := int(r.hdr[0])<<16 | int(r.hdr[1])<<8 | int(r.hdr[2])
		stream := binary.BigEndian.Uint32(r.hdr[5:9]) & 0x7fffffff
		if r.hdr[3] == h2FrameHeaders && stream == r.stream {
			return true
		}
		r.skip = length
	}
	return false
}
