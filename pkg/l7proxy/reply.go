package l7proxy

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"time"
)

// Bounds of the answer to an HTTP/1.x client that is cut.
const (
	// replyTimeout bounds writing the answer.
	replyTimeout = time.Second
	// lingerTime and lingerBytes bound how long and how much the proxy
	// reads and discards after the answer and its FIN: closing a socket
	// with unread bytes sends a reset, which can destroy the answer
	// before the client reads it (as net/http's server also avoids).
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 256 << 10
)

// httpStatus is the status an HTTP/1.x client gets when cut for r, or 0
// for none.
func httpStatus(r Reason) int {
	switch r {
	case ReasonMalformed:
		return 400
	case ReasonTimeout:
		return 408
	case ReasonTooLarge:
		return 431
	case ReasonNoBackend, ReasonDialFailed:
		return 503
	default:
		return 0 // closed: nobody to answer; full, splice_failed: closed already
	}
}

var statusText = map[int]string{
	400: "Bad Request",
	408: "Request Timeout",
	431: "Request Header Fields Too Large",
	503: "Service Unavailable",
}

// answer writes a minimal HTTP/1.1 response with no body to c, half-closes
// it and discards what the client still sends, within the bounds above.
// The caller closes c.
func answer(c *net.TCPConn, status int) {
	msg := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status, statusText[status])
	c.SetWriteDeadline(time.Now().Add(replyTimeout))
	if _, err := c.Write([]byte(msg)); err != nil {
		return
	}
	if c.CloseWrite() != nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(lingerTime))
	bp := copyBufs.get()
	defer copyBufs.put(bp)
	buf := *bp
	// Each pass reads at least a byte or ends.
	for got := 0; got < lingerBytes; {
		n, err := c.Read(buf)
		got += n
		if err != nil {
			return
		}
	}
}

// statusCode returns the status code of an HTTP/1.x status line at the
// start of b ("HTTP/1.1 503 ..."), or 0 when b does not start with one.
func statusCode(b []byte) int {
	const prefix = "HTTP/1."
	// "HTTP/1.1 200 " is 13 bytes; HTTP/1.x requires the space after the
	// code (RFC 9112, section 4), even with an empty reason phrase.
	if len(b) < len(prefix)+6 || !bytes.HasPrefix(b, []byte(prefix)) {
		return 0
	}
	if b[8] != ' ' || b[12] != ' ' {
		return 0
	}
	code, err := strconv.Atoi(string(b[9:12]))
	if err != nil || code < 100 || code > 999 {
		return 0
	}
	return code
}
