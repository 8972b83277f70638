// Package l7proxy is the user-space engine of delayed binding for L7
// services (issue 22): it accepts a client's connection itself, reads only
// the head of the first request, asks the agent which backend the
// connection goes to, connects there, writes the bytes it read, and hands
// both sockets to a Splicer, after which it no longer looks at the bytes.
// The parsers (httphead, h2head, tlshello), the rules (match) and the
// kernel splice (l7splice) are elsewhere; this package joins them and
// bounds what a client can make the agent hold.
//
// # One connection
//
//  1. Accept. The connection counts as pending from here until it is
//     spliced or cut; at most Options.MaxPending are (see "Pending limit").
//  2. Read into one buffer of at most Options.MaxHeadBytes until the first
//     request's head is complete: httphead.Sniff tells a TLS ClientHello
//     (tlshello), the HTTP/2 preface with the first HEADERS (h2head) and an
//     HTTP/1.x request line (httphead) apart. An HTTP/2 client first gets
//     the proxy's own SETTINGS, and its head ends with its acknowledgement
//     of them too (see "HTTP/2 without TLS"). The read deadline is set
//     once, at accept, to Options.HeadTimeout: a client that trickles
//     bytes does not earn more time (slowloris).
//  3. Decider.Decide turns the client and frontend addresses and the
//     match.Request into a Decision: backend, pool, and the deciding rule
//     (-1 when the pins or the weight decided).
//  4. Options.Dial connects to the backend within Options.ConnectTimeout,
//     and every buffered byte (the head and whatever followed it) is
//     written to it, unchanged but for the HTTP/2 acknowledgement above.
//  5. Splicer.Splice owns both sockets until the connection ends:
//     KernelSplicer splices them in the kernel (l7splice); CopySplicer
//     copies both ways in Go (splice(2) through a pipe, since Go turns a
//     TCP-to-TCP io.Copy into that). Idle spliced connections are not
//     this package's business.
//
// The decision is made once per connection: later requests on a
// keep-alive connection, other HTTP/2 streams and whatever an upgraded
// connection carries go where the first request went (package match).
//
// # HTTP/2 without TLS
//
// A client speaking HTTP/2 with prior knowledge (h2c, gRPC without TLS)
// may wait for the server's connection preface, a SETTINGS frame, before
// it sends its first HEADERS: grpc-go does ("error reading server
// preface"). So once the client preface is read, the proxy writes an
// empty SETTINGS frame: no parameters, the protocol's initial values,
// which every client accepts and by which h2head reads (frames of at most
// 16 KiB). The client acknowledges it with a SETTINGS frame with the ACK
// flag and no payload; the backend did not send those SETTINGS, and Go's
// HTTP/2 server answers an acknowledgement it did not ask for with
// PROTOCOL_ERROR (grpc-go's ignores it), so the proxy takes exactly that
// frame out of the bytes it forwards. The backend's own SETTINGS reach
// the client later, as a second SETTINGS frame, which is legal; the
// client's acknowledgement of them is forwarded like any frame.
//
// The head is complete when both the first header block and that
// acknowledgement were read, in either order: x/net/http2 sends preface,
// SETTINGS and HEADERS at once and acknowledges when the proxy's SETTINGS
// arrive; grpc-go waits for them, then acknowledges and sends HEADERS.
// The client's frames are walked by their lengths from the preface on
// (bytes are never searched), and the first SETTINGS acknowledgement is
// the one removed. MaxHeadBytes and the head deadline bound the whole
// wait: a client that never acknowledges is cut at HeadTimeout
// (ReasonTimeout), and until it acknowledges it may be evicted like any
// client still reading its head. One exception to the byte bound: when
// the header block ended and the buffer is full before the
// acknowledgement came (x/net/http2 sends a request body at once, up to
// the 64 KiB initial window; on loopback 17 of 20 such 60 KB POSTs
// passed 16 KiB first), the connection is decided and connected, and the
// client's frames are relayed to the backend, whole frames through, only
// a partial frame header held back, until the acknowledgement is dropped,
// within the head deadline still (TestH2BodyBeforeAck).
//
// Other frames pass unchanged: PING, WINDOW_UPDATE, PRIORITY,
// CONTINUATION and frames of unknown types. A PING before the first
// HEADERS is not answered by the proxy: it reaches the backend with the
// head, whose answer follows the backend's SETTINGS (TestH2PingBeforeHeaders).
// A client that waited for that answer before sending HEADERS would be
// cut at HeadTimeout; neither grpc-go nor x/net/http2 does (grpc-go sends
// PINGs for keepalive and flow-control estimates, after its streams
// started). HTTP/2 over TLS (ALPN h2) is not affected: the proxy never
// terminates TLS and decides by the ClientHello's SNI alone.
//
// # Cuts
//
// A connection that does not get that far is closed and counted by Reason
// (Observer.Cut): it timed out, its head passed a bound, it was not one of
// the three protocols or broke one, its client closed it first, the
// pending limit evicted or refused it, there was no backend, or the
// backend could not be reached. Only a client whose bytes were sniffed as
// HTTP/1.x gets an answer first (400, 408, 431 or 503 with Connection:
// close), followed by a bounded lingering close so that the answer is not
// destroyed by a reset; TLS and HTTP/2 clients are just closed (HTTP/2
// ones had the proxy's SETTINGS), since answering them would mean
// speaking their protocol.
//
// # Pending limit
//
// The pending limit protects memory: each pending connection holds up to
// MaxHeadBytes and a goroutine. When a new connection would pass it, the
// oldest connection still reading its head is evicted (closed, counted as
// ReasonFull) and the new one takes its place; only if every pending
// connection has already sent its head (it waits for a decision or a
// backend) is the new one closed instead. A client that sends its head
// promptly therefore gets through a flood of idle connections; to starve
// it, an attacker must open MaxPending connections within the time the
// client needs to send its head, rather than once per HeadTimeout.
//
// # Measurements
//
// Observer receives what the agent exports with its L4 metric names:
// decisions per pool and rule, cuts by reason, the backend connect
// latency, and, with CopySplicer only, the first response: the time from
// writing the first request to the start of its response, and the
// HTTP/1.x status code when the response starts with a status line. For
// HTTP/2 (gRPC) the start is the first HEADERS frame of the client's
// first stream, found by walking the backend's frames (its SETTINGS come
// first, before it has read anything), with its :status, and for gRPC
// the call's grpc-status (Observer.GRPCStatus) from a Trailers-Only
// response or the trailers: every header block of the connection is
// HPACK-decoded in order (h2Response), within PeekLimit. For TLS it
// is the ServerHello, the handshake's latency. The walk sees at most
// PeekLimit bytes. The kernel splice moves the response without
// user space seeing it, so KernelSplicer reports no first response.
// Counters is a simple Observer for tests. The status is read from the
// backend's first read only: a status line split across segments (rare)
// is reported as 0.
//
// An HTTP/1.x head is parsed only when a read may have ended it (an
// empty line arrived), so that a client trickling bytes does not make
// the agent re-parse a growing head per byte; a broken HTTP/1.x head is
// therefore found at its end, or cut as too large.
//
// # Shutdown
//
// Serve returns when its context is cancelled or the listener is closed;
// Close closes the listener. Both wait for the connections still pending
// (each finishes within HeadTimeout plus ConnectTimeout and a short
// lingering close), but leave spliced connections running until they end
// by themselves: Live counts them, Drain waits for them, Abort ends them
// (with a reset) together with any pending connection.
//
// # Handing connections over
//
// A process that is about to be replaced (the agent's restart) can hand
// its connections to the next one without losing a byte: StopAccepting,
// WaitPending for the connections past their head to be spliced (within
// a bound), CutPending for the rest, then Handover.Freeze. A CopySplicer
// given a Handover stops each copy at a read: io.Copy between TCP sockets
// fills a pipe with splice(2) and empties it before reading again, so a
// read that returns for its deadline leaves no byte behind; a copy
// blocked writing to a receiver that does not read stops when its write
// ends, and Freeze waits for it within its context. The frozen sockets
// are open and untouched; any CopySplicer (in this process or another,
// through their file descriptors) carries them on
// (TestHandoverMidTransfer freezes a 256 MiB upload, passes both sockets
// through descriptors and finishes it, every byte and both FINs intact).
// KernelSplicer pairs cannot be frozen: their FINs are forwarded by the
// Pair that watches them, and taking sockets out of the sockmap drops
// bytes (package l7splice).
//
// # Numbers
//
// BenchmarkBulk, loopback on a shared 2-core VM (2026-12-07, five runs of
// ten 64 MiB connections each; client and sink in the test process):
// direct 1.31-1.48 GB/s, CopySplicer 1.13-1.24 GB/s, KernelSplicer
// 0.39-0.89 GB/s (mostly about 0.43). The kernel splice is the slower
// path for bulk bytes here too, as package l7splice measured between lab
// namespaces (see its Numbers, which also count CPU time).
package l7proxy
