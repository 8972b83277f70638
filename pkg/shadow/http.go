package shadow

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/netip"
	"time"
)

// offsetReader reads a stream's bytes and knows how many it gave out.
type offsetReader struct {
	data []byte
	n    int
}

func (r *offsetReader) Read(p []byte) (int, error) {
	if r.n >= len(r.data) {
		return 0, io.EOF
	}
	k := copy(p, r.data[r.n:])
	r.n += k
	return k, nil
}

// cursor is a bufio.Reader over a stream that knows the offset of the
// next byte it will return.
type cursor struct {
	src *offsetReader
	br  *bufio.Reader
}

func newCursor(data []byte) *cursor {
	src := &offsetReader{data: data}
	return &cursor{src: src, br: bufio.NewReader(src)}
}

func (c *cursor) offset() int { return c.src.n - c.br.Buffered() }

// parseHTTP pairs the requests of the client's stream with the responses
// of the server's, in order (pipelined requests are answered in order).
// It stops at the first request or response that does not parse; ok is
// false when not even one request did.
func parseHTTP(req, resp *stream, client, server netip.AddrPort, stats *ReadStats) (out []Exchange, ok bool) {
	rc, sc := newCursor(req.data), newCursor(resp.data)
	answering := true
	for {
		start := rc.offset()
		r, err := http.ReadRequest(rc.br)
		if err != nil {
			break
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			break // the body is cut short
		}
		raw := req.data[start:rc.offset()]
		ex := Exchange{Protocol: HTTP, Client: client, Server: server, At: req.timeAt(start),
			Request: Request{Method: r.Method, Target: r.RequestURI, Proto: r.Proto, Header: r.Header, Body: body, Raw: bytes.Clone(raw)}}
		if answering {
			ex.Response, ex.Latency, answering = readResponse(sc, resp, r, ex.At)
		}
		if ex.Response == nil {
			stats.Unanswered++
		}
		stats.HTTP++
		out = append(out, ex)
		if r.Method == http.MethodConnect || (ex.Response != nil && ex.Response.Status == http.StatusSwitchingProtocols) {
			break // what follows is not HTTP/1.x
		}
	}
	return out, len(out) > 0
}

// readResponse reads the final response to r from sc, skipping 1xx
// interim responses (except 101, which is final). more is false once the
// server's stream cannot answer anything further.
//
// The latency is from sentAt to the first byte of the first response,
// interim or final.
func readResponse(sc *cursor, s *stream, r *http.Request, sentAt time.Time) (*Response, time.Duration, bool) {
	start := -1
	for {
		off := sc.offset()
		resp, err := http.ReadResponse(sc.br, r)
		if err != nil {
			return nil, 0, false
		}
		if start < 0 {
			start = off
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, 0, false
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, s.timeAt(start).Sub(sentAt), true
	}
}
