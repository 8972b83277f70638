package httphead

import (
	"bytes"
)

// Protocol is what the first bytes of a connection look like.
type Protocol int

const (
	// NeedMore means the bytes so far fit more than one protocol, or none
	// yet: read more and sniff again.
	NeedMore Protocol = iota
	// Unknown is none of the protocols below.
	Unknown
	// HTTP1 is an HTTP/1.x request line (package httphead parses it).
	HTTP1
	// HTTP2 is the HTTP/2 connection preface of a client with prior
	// knowledge (package h2head parses it).
	HTTP2
	// TLS is a TLS handshake record, as a ClientHello starts (package
	// tlshello parses it).
	TLS
)

func (p Protocol) String() string {
	switch p {
	case NeedMore:
		return "need-more"
	case Unknown:
		return "unknown"
	case HTTP1:
		return "http/1"
	case HTTP2:
		return "h2-preface"
	case TLS:
		return "tls"
	}
	return "protocol(?)"
}

// Preface is the HTTP/2 client connection preface (RFC 9113, section 3.4).
const Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxMethodBytes bounds how long a method Sniff waits for; longer tokens
// are not HTTP methods anyone sends.
const maxMethodBytes = 24

// Sniff tells from the first bytes of a connection whether it starts an
// HTTP/1.x request, the HTTP/2 preface or a TLS handshake record. It needs
// at most len(Preface) bytes; a few suffice for HTTP/1.x and TLS. Empty
// lines before a request line are skipped, as Parse does. An SSLv2-style
// ClientHello is Unknown.
func Sniff(buf []byte) Protocol {
	if len(buf) == 0 {
		return NeedMore
	}
	if buf[0] == 0x16 {
		return sniffTLS(buf)
	}
	if bytes.HasPrefix(buf, []byte(Preface)) {
		return HTTP2
	}
	if bytes.HasPrefix([]byte(Preface), buf) && bytes.HasPrefix(buf, []byte("PRI ")) {
		return NeedMore // "PRI " is a method too: wait for the preface to tell
	}
	return sniffHTTP1(bytes.TrimLeft(buf, "\r\n"))
}

// sniffTLS checks a record header: handshake type, then version 3.x with
// x at most 4 (SSL 3.0 to TLS 1.3 put 0x0300..0x0304 there).
func sniffTLS(buf []byte) Protocol {
	switch {
	case len(buf) < 3:
		if len(buf) == 2 && buf[1] != 3 {
			return Unknown
		}
		return NeedMore
	case buf[1] == 3 && buf[2] <= 4:
		return TLS
	}
	return Unknown
}

// sniffHTTP1 looks for a method token followed by a space and the start
// of a target.
func sniffHTTP1(buf []byte) Protocol {
	for i, b := range buf {
		switch {
		case b == ' ' && i > 0:
			if i+1 == len(buf) {
				return NeedMore
			}
			if next := buf[i+1]; next <= ' ' || next == 0x7f {
				return Unknown
			}
			return HTTP1
		case !isTokenByte(b) || i >= maxMethodBytes:
			return Unknown
		}
	}
	return NeedMore
}
