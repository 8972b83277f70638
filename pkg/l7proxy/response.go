package l7proxy

import (
	"time"

	"github.com/graylane/graylane/pkg/httphead"
)

// PeekLimit bounds the backend bytes a Splicer shows Conns.Peek: past it,
// no first response is reported.
const PeekLimit = 64 << 10

// h2FrameHeaderLen is an HTTP/2 frame header's length (RFC 9113,
// section 4.1).
const h2FrameHeaderLen = 9

// responsePeek finds a connection's first response in the backend's
// bytes and reports it to the Observer. For HTTP/1.x and TLS that is the
// first byte (the status line; the ServerHello). For HTTP/2 it is the
// first HEADERS frame of the client's first stream (a server's first
// bytes are its SETTINGS, sent before it has read the request), reported
// with its :status once its header block is decoded, and then, for gRPC,
// the call's grpc-status where the peek sees it (h2Response).
type responsePeek struct {
	obs    Observer
	d      Decision
	sent   time.Time
	proto  httphead.Protocol
	stream uint32 // HTTP/2: the first request's stream

	h2       *h2Response
	reported bool // FirstResponse called
}

// peek is Conns.Peek: it returns true once it has nothing more to report.
func (r *responsePeek) peek(b []byte) bool {
	if r.proto != httphead.HTTP2 {
		status := 0
		if r.proto == httphead.HTTP1 {
			status = statusCode(b)
		}
		r.obs.FirstResponse(r.d, time.Since(r.sent), status)
		return true
	}
	if r.h2 == nil {
		r.h2 = newH2Response(r.stream)
	}
	h := r.h2
	h.feed(b)
	if !r.reported && !h.headersAt.IsZero() && (h.blocksSeen > 0 || h.done) {
		r.reported = true
		r.obs.FirstResponse(r.d, h.headersAt.Sub(r.sent), h.status)
	}
	if !h.done {
		return false
	}
	if h.grpc && h.grpcStatus >= 0 {
		r.obs.GRPCStatus(r.d, h.grpcStatus)
	}
	return true
}
