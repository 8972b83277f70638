// Package shadow replays captured requests to a target and compares its
// answers with the recorded ones: `graylanectl shadow` and the release
// gate's shadow step.
//
// Read turns a capture with payload (pcap or pcapng) into Exchanges: the
// HTTP/1.x request → response pairs of its reassembled TCP connections
// (keep-alive, pipelining, chunked and Content-Length bodies, HEAD, 1xx,
// 204 and 304 without a body) and its UDP request → answer pairs (DNS-like:
// a client's datagram and the server's next datagram on the same 4-tuple).
// Run replays each request over a fresh connection with the capture's
// pacing and compares status, headers (less the volatile ones) and body
// with the recorded response; see Report.
package shadow

import (
	"errors"
	"net/http"
	"net/netip"
	"time"
)

// Protocol is what an Exchange was carried by.
type Protocol string

// The protocols an Exchange can have.
const (
	HTTP Protocol = "http" // HTTP/1.x over TCP
	UDP  Protocol = "udp"  // a datagram and its answer
)

// Exchange is one request and the response recorded for it.
type Exchange struct {
	Protocol Protocol       `json:"protocol"`
	Client   netip.AddrPort `json:"client"`
	Server   netip.AddrPort `json:"server"`
	// At is the time of the request's first packet.
	At       time.Time `json:"at"`
	Request  Request   `json:"request"`
	Response *Response `json:"response,omitempty"` // nil: none was recorded
	// Latency is from the request's first byte to the response's first
	// byte, as captured.
	Latency time.Duration `json:"latency"`
}

// Request is a recorded request. For UDP only Body is set (the datagram).
type Request struct {
	Method string      `json:"method,omitempty"`
	Target string      `json:"target,omitempty"` // the request-target: /path?query
	Proto  string      `json:"proto,omitempty"`  // HTTP/1.1
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
	// Raw is the request as it was sent, head and body: what Run sends.
	Raw []byte `json:"-"`
}

// Response is a recorded (or replayed) response. For UDP only Body is set.
type Response struct {
	Status int         `json:"status,omitempty"`
	Header http.Header `json:"header,omitempty"`
	Body   []byte      `json:"body,omitempty"`
}

// ReadStats counts what Read saw.
type ReadStats struct {
	Packets     int `json:"packets"`
	TCPStreams  int `json:"tcpStreams"`  // connections with payload
	HTTP        int `json:"http"`        // HTTP exchanges, answered or not
	UDP         int `json:"udp"`         // UDP exchanges, answered or not
	Unanswered  int `json:"unanswered"`  // requests without a recorded response
	NotIP       int `json:"notIP"`       // frames that are neither IPv4 nor IPv6 (ARP, …): ignored
	Gaps        int `json:"gaps"`        // streams cut short by bytes missing from the capture
	NotHTTP     int `json:"notHTTP"`     // streams whose bytes are not HTTP/1.x: ignored
	Fragments   int `json:"fragments"`   // IP fragments: ignored
	Cut         int `json:"cut"`         // packets cut at WholePacketMax: their streams have a gap
	OtherProtos int `json:"otherProtos"` // IP packets neither TCP nor UDP: ignored
}

// ErrNoPayload is the error of a capture whose packets were cut short
// (captured length below the packet's length): its bodies are missing.
var ErrNoPayload = errors.New("the capture holds no payload (packets cut to their headers): capture with --payload")
