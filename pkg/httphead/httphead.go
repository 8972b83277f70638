// Package httphead reads the head of the first HTTP/1.x request on a
// connection from the bytes received so far, so that the agent can decide
// a connection's pool by its headers before it picks a backend. It never
// reads a body and never writes: the caller forwards the bytes it buffered,
// unchanged, to the backend it chose.
//
// Bounds: a head (request line, header lines and the empty line ending
// them, plus any empty lines before the request line) of at most
// MaxHeadBytes, lines of at most MaxLineBytes, at most MaxHeaders header
// lines. Past a bound Parse returns ErrTooLarge; before the head is
// complete, ErrIncomplete, so the caller reads more and calls again.
//
// What it accepts and what not:
//   - HTTP/1.0 and HTTP/1.1 (any HTTP/1.x minor version). A Host header is
//     not required (HTTP/1.0 has none); two Host headers are an error.
//   - Lines end in CRLF or a bare LF (RFC 9112, section 2.2); a bare CR,
//     a NUL, other control characters in values, obs-fold continuation
//     lines and whitespace before a header's colon are errors.
//   - Content-Length and Transfer-Encoding are checked because the caller
//     must know where the first request ends: differing lengths, both
//     headers at once, or a transfer coding that does not end in chunked
//     are errors. Consumed is where the head ends; a body and any pipelined
//     requests follow it and go to the same backend, unread.
//   - An h2c upgrade (Connection: Upgrade, Upgrade: h2c) is an HTTP/1.1
//     first request like any other: it is decided by its headers and the
//     connection stays with the backend chosen, whatever it upgrades to.
//     HTTP/2 with prior knowledge starts with the connection preface,
//     which Sniff tells apart; package h2head reads it.
package httphead

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Bounds of a request head.
const (
	MaxHeadBytes = 16 << 10
	MaxLineBytes = 8 << 10
	MaxHeaders   = 100
)

// Errors of Parse; the errors returned wrap one of these.
var (
	// ErrIncomplete means the head has not ended yet: read more bytes.
	ErrIncomplete = errors.New("incomplete HTTP/1.x request head: read more bytes")
	// ErrTooLarge means a bound was passed before the head ended.
	ErrTooLarge = errors.New("HTTP/1.x request head too large")
	// ErrMalformed means the bytes are not a valid HTTP/1.x request head.
	ErrMalformed = errors.New("malformed HTTP/1.x request head")
)

// Request is the head of an HTTP/1.x request.
type Request struct {
	Method  string
	Target  string // as sent: origin-form "/a?b", absolute-form, authority-form or "*"
	Version string // "HTTP/1.1"
	// Headers maps lowercase field names to their values, in order, with
	// leading and trailing whitespace removed.
	Headers map[string][]string
	// Host is the Host header's value; empty when there is none.
	Host string
	// Upgrade is the Upgrade header's value when the Connection header
	// names "upgrade" ("websocket", "h2c"); empty otherwise.
	Upgrade string
	// ContentLength is the body's length from Content-Length; 0 without one.
	ContentLength int64
	// Chunked is true when the body is sent with chunked transfer coding.
	Chunked bool
}

// Closes reports whether the connection ends with this request's
// response (RFC 9112, section 9.3): the client sent Connection: close, or
// spoke HTTP/1.0 without asking to keep the connection alive.
func (r Request) Closes() bool {
	conn := r.Headers["connection"]
	return hasToken(conn, "close") || (r.Version == "HTTP/1.0" && !hasToken(conn, "keep-alive"))
}

// HasBody reports whether bytes of a body follow the head.
func (r Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// Parse reads the request head at the start of buf. It returns the head
// and the bytes it took, up to and including the empty line that ends it.
// Errors wrap ErrIncomplete, ErrTooLarge or ErrMalformed; on error consumed
// is 0.
func Parse(buf []byte) (req Request, consumed int, err error) {
	p := parser{buf: buf}
	if err := p.skipEmptyLines(); err != nil {
		return Request{}, 0, err
	}
	line, err := p.line()
	if err != nil {
		return Request{}, 0, err
	}
	if req, err = parseRequestLine(line); err != nil {
		return Request{}, 0, err
	}
	if req.Headers, err = p.headers(); err != nil {
		return Request{}, 0, err
	}
	if err := req.interpret(); err != nil {
		return Request{}, 0, err
	}
	return req, p.pos, nil
}

// parser walks buf line by line.
type parser struct {
	buf []byte
	pos int
	n   int // lines read
}

// line returns the next line without its CRLF or LF.
func (p *parser) line() ([]byte, error) {
	rest := p.buf[p.pos:]
	end := indexByte(rest, '\n', MaxLineBytes+2)
	if end < 0 {
		return nil, p.incomplete(rest)
	}
	line := rest[:end]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	p.n++
	if len(line) > MaxLineBytes {
		return nil, fmt.Errorf("%w: line %d is longer than %d bytes", ErrTooLarge, p.n, MaxLineBytes)
	}
	if p.pos+end+1 > MaxHeadBytes {
		return nil, fmt.Errorf("%w: the head is longer than %d bytes", ErrTooLarge, MaxHeadBytes)
	}
	if i := bytes.IndexAny(line, "\r\x00"); i >= 0 {
		return nil, fmt.Errorf("%w: line %d has a %s at byte %d", ErrMalformed, p.n, ctlName(line[i]), i)
	}
	p.pos += end + 1
	return line, nil
}

// incomplete says why rest, the unterminated tail of buf, is not a line:
// a bound is passed, it already holds a NUL, or more bytes are needed.
func (p *parser) incomplete(rest []byte) error {
	switch {
	case len(rest) > MaxLineBytes+1:
		return fmt.Errorf("%w: line %d is longer than %d bytes", ErrTooLarge, p.n+1, MaxLineBytes)
	case len(p.buf) >= MaxHeadBytes:
		return fmt.Errorf("%w: no end of the head in the first %d bytes", ErrTooLarge, MaxHeadBytes)
	case bytes.IndexByte(rest, 0) >= 0:
		return fmt.Errorf("%w: line %d has a NUL", ErrMalformed, p.n+1)
	}
	return ErrIncomplete
}

// skipEmptyLines passes the empty lines a client may send before the
// request line (RFC 9112, section 2.2).
func (p *parser) skipEmptyLines() error {
	for p.pos < MaxHeadBytes {
		rest := p.buf[p.pos:]
		switch {
		case len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n':
			p.pos += 2
		case len(rest) >= 1 && rest[0] == '\n':
			p.pos++
		case len(rest) == 1 && rest[0] == '\r':
			return ErrIncomplete
		default:
			return nil
		}
	}
	return fmt.Errorf("%w: only empty lines in the first %d bytes", ErrTooLarge, MaxHeadBytes)
}

// headers reads header lines up to the empty line that ends the head.
func (p *parser) headers() (map[string][]string, error) {
	headers := make(map[string][]string)
	for count := 0; ; count++ {
		line, err := p.line()
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			return headers, nil
		}
		if count == MaxHeaders {
			return nil, fmt.Errorf("%w: more than %d header lines", ErrTooLarge, MaxHeaders)
		}
		name, value, err := parseHeaderLine(line, p.n)
		if err != nil {
			return nil, err
		}
		headers[name] = append(headers[name], value)
	}
}

func parseHeaderLine(line []byte, n int) (name, value string, err error) {
	if line[0] == ' ' || line[0] == '\t' {
		return "", "", fmt.Errorf("%w: line %d continues the previous header (obs-fold), which is not allowed", ErrMalformed, n)
	}
	s := string(line)
	name, value, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		return "", "", fmt.Errorf("%w: header line %d %s has no colon", ErrMalformed, n, excerpt(s))
	case name == "":
		return "", "", fmt.Errorf("%w: header line %d has no name before its colon", ErrMalformed, n)
	case strings.TrimRight(name, " \t") != name:
		return "", "", fmt.Errorf("%w: header line %d has whitespace between the name and the colon", ErrMalformed, n)
	case !isToken(name):
		return "", "", fmt.Errorf("%w: header line %d: %s is not a valid header name", ErrMalformed, n, excerpt(name))
	}
	value = strings.Trim(value, " \t")
	if i := strings.IndexFunc(value, isCtl); i >= 0 {
		return "", "", fmt.Errorf("%w: header %s has a %s in its value", ErrMalformed, name, ctlName(value[i]))
	}
	return strings.ToLower(name), value, nil
}

// parseRequestLine reads "METHOD SP target SP HTTP/1.x".
func parseRequestLine(line []byte) (Request, error) {
	s := string(line)
	parts := strings.Split(s, " ")
	if len(parts) != 3 {
		return Request{}, fmt.Errorf("%w: request line %s is not METHOD, target and version separated by single spaces", ErrMalformed, excerpt(s))
	}
	method, target, version := parts[0], parts[1], parts[2]
	switch {
	case !isToken(method):
		return Request{}, fmt.Errorf("%w: request line: %s is not a method", ErrMalformed, excerpt(method))
	case target == "" || strings.IndexFunc(target, isCtl) >= 0 || strings.ContainsRune(target, '\t'):
		return Request{}, fmt.Errorf("%w: request line: %s is not a request target", ErrMalformed, excerpt(target))
	case s == "PRI * HTTP/2.0":
		return Request{}, fmt.Errorf("%w: this is the HTTP/2 connection preface, not an HTTP/1.x request", ErrMalformed)
	case len(version) != len("HTTP/1.1") || !strings.HasPrefix(version, "HTTP/1.") || !isDigit(version[7]):
		return Request{}, fmt.Errorf("%w: request line: version %s is not HTTP/1.0 or HTTP/1.1", ErrMalformed, excerpt(version))
	}
	return Request{Method: method, Target: target, Version: version}, nil
}
