package l7proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/graylane/graylane/pkg/httphead"
	"github.com/graylane/graylane/pkg/match"
	"github.com/graylane/graylane/pkg/tlshello"
)

// firstRead is the buffer's first size: most heads fit, and a pending
// connection that sends nothing holds no more than this.
const firstRead = 4 << 10

// head is what was read of a connection before its decision.
type head struct {
	// buf holds every byte read, the head and whatever followed it, less
	// an HTTP/2 client's acknowledgement of the proxy's SETTINGS.
	buf      []byte
	proto    httphead.Protocol
	req      match.Request
	complete bool        // req is set (HTTP/2: the first header block ended)
	stream   uint32      // HTTP/2: the first request's stream
	ack      settingsAck // HTTP/2: the proxy's SETTINGS and their ACK
	closes   bool        // HTTP/1.x: the connection ends with the first response
	pooled   *[]byte     // buf's array when it came from headBufs
}

// cutError is a read that ended without a head, and why.
type cutError struct {
	reason Reason
	err    error
}

func (e *cutError) Error() string { return fmt.Sprintf("%s: %v", e.reason, e.err) }
func (e *cutError) Unwrap() error { return e.err }

// readHead reads c until the first request's head is complete (for
// HTTP/2, also until the client acknowledged the proxy's SETTINGS), or
// max bytes were read, or a read fails (the caller set the deadline).
// Errors are *cutError. The returned head's proto is set even on error,
// so that the caller knows whether it may answer in HTTP/1.x. Its buf may
// be pooled: the caller releases it, on every path, once done with it.
func readHead(c net.Conn, max int) (head, error) {
	h := head{proto: httphead.NeedMore}
	if max >= firstRead {
		h.pooled = headBufs.get()
		h.buf = (*h.pooled)[:0]
	} else {
		h.buf = make([]byte, 0, max)
	}
	// Every pass reads at least one byte or ends, so max+1 passes bound it.
	for range max + 1 {
		if len(h.buf) == cap(h.buf) {
			if len(h.buf) >= max {
				if h.complete && h.awaitingAck() {
					return h, nil // the rest is relayed (relayUntilAck)
				}
				return h, &cutError{ReasonTooLarge, fmt.Errorf("no complete %s head%s in %d bytes", h.proto, h.waitingFor(), max)}
			}
			grown := append(make([]byte, 0, min(2*cap(h.buf), max)), h.buf...)
			h.release()
			h.buf = grown
		}
		n, rerr := c.Read(h.buf[len(h.buf):cap(h.buf)])
		old := len(h.buf)
		h.buf = h.buf[:old+n]
		if n > 0 {
			done, err := h.parse(c, old)
			if err != nil || done {
				return h, err
			}
		}
		if rerr != nil {
			return h, readCut(rerr, len(h.buf), h.waitingFor())
		}
	}
	return h, &cutError{ReasonTooLarge, errors.New("read loop bound")}
}

// release gives h.buf's array back to headBufs if it came from there,
// and clears h.buf: the caller is done with the bytes read (forwarded to
// the backend, or the connection cut). h's other fields stay.
func (h *head) release() {
	headBufs.put(h.pooled)
	h.pooled, h.buf = nil, nil
}

// waitingFor names what an HTTP/2 head lacks once its header block ended.
func (h *head) waitingFor() string {
	if h.complete && h.proto == httphead.HTTP2 && !h.ack.acked {
		return " (no SETTINGS acknowledgement)"
	}
	return ""
}

// readCut classifies a failed read; waiting says what the head lacks.
func readCut(err error, got int, waiting string) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &cutError{ReasonTimeout, fmt.Errorf("head incomplete%s after %d bytes: %w", waiting, got, err)}
	}
	if errors.Is(err, io.EOF) {
		return &cutError{ReasonClosed, fmt.Errorf("client closed after %d bytes: %w", got, err)}
	}
	return &cutError{ReasonClosed, fmt.Errorf("read after %d bytes: %w", got, err)}
}

// parse tries to complete the head with the bytes from old on added. It
// returns done when h.req is set (HTTP/2: and the SETTINGS acknowledged);
// it writes to c only the proxy's HTTP/2 SETTINGS.
func (h *head) parse(c net.Conn, old int) (bool, error) {
	if h.proto == httphead.NeedMore {
		h.proto = httphead.Sniff(h.buf)
	}
	switch h.proto {
	case httphead.NeedMore:
		return false, nil
	case httphead.HTTP1:
		// A head ends with an empty line. Parsing only when one may have
		// arrived keeps a client that sends a byte at a time from making
		// the agent parse the growing head once per byte.
		if !mayEndHead(h.buf, old) {
			return false, nil
		}
		r, _, err := httphead.Parse(h.buf)
		h.req, h.complete = match.Request{Headers: r.Fields()}, err == nil
		h.closes = h.complete && r.Closes()
		return h.complete, parseCut(err, httphead.ErrIncomplete, httphead.ErrTooLarge)
	case httphead.HTTP2:
		return h.parseH2(c)
	case httphead.TLS:
		hello, _, err := tlshello.Parse(h.buf)
		h.req, h.complete = match.Request{SNI: hello.ServerName}, err == nil
		return h.complete, parseCut(err, tlshello.ErrIncomplete, tlshello.ErrTooLarge)
	default:
		return false, &cutError{ReasonMalformed, fmt.Errorf("first bytes are not TLS, HTTP/2 or HTTP/1.x: %q", h.buf[:min(len(h.buf), 16)])}
	}
}

// parseCut maps a parser's error: incomplete is no error yet.
func parseCut(err, incomplete, tooLarge error) error {
	switch {
	case err == nil, errors.Is(err, incomplete):
		return nil
	case errors.Is(err, tooLarge):
		return &cutError{ReasonTooLarge, err}
	default:
		return &cutError{ReasonMalformed, err}
	}
}

// mayEndHead reports whether the bytes from old on may have completed an
// HTTP/1.x head: an LF followed by an empty line (CRLF or bare LF).
func mayEndHead(buf []byte, old int) bool {
	tail := buf[max(0, old-2):]
	return bytes.Contains(tail, []byte("\n\r\n")) || bytes.Contains(tail, []byte("\n\n"))
}
