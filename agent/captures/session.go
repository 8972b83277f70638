package captures

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/capture"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/redact"
	"github.com/graylane/graylane/pkg/service"
)

// Request is one capture of one service on this node.
type Request struct {
	Service string
	// Share is the share of the service's new flows captured (whole
	// flows, both directions).
	Share service.Weight
	// Duration and Count end the capture (0: no bound); ctx ends it too.
	Duration time.Duration
	Count    int
	// What of each packet is kept: Payload the whole packet (up to
	// datapath.CaptureSnapMax bytes), else Snaplen bytes, else (0) its
	// headers only, through L4 (for GTP-U through the inner L4).
	Snaplen int
	Payload bool
	// StableOnly keeps the flows of the stable pool only (a shadow gate
	// compares the canary with stable's recorded answers).
	StableOnly bool
	// Redactor, when set, replaces every address that Keep does not keep
	// (the client and UE addresses) with its pseudonym.
	Redactor *redact.Redactor
	Keep     func(netip.Addr) bool
}

// headersSnap is what the kernel copies for a headers-only capture: the
// longest header chain HeaderLen keeps (Ethernet, two VLAN tags, IPv6 with
// extension headers, UDP, GTP-U with extensions, inner IPv6, TCP with
// options) fits.
const headersSnap = 256

func (r Request) kernelSnap() uint32 {
	switch {
	case r.Payload:
		return datapath.CaptureSnapMax
	case r.Snaplen > 0:
		return uint32(min(r.Snaplen, int(datapath.CaptureSnapMax)))
	}
	return headersSnap
}

// Result is what a capture wrote: Written packets, Dropped ones (the full
// ring's and this capture's full queue's), Seen = Written + Dropped.
type Result struct {
	Written, Dropped, Seen uint64
}

// session is a running capture.
type session struct {
	Request
	svcID       uint32
	share       service.Weight
	kernelSnap  uint32
	queue       chan record
	queuedBytes atomic.Int64 // packet bytes in queue
	dropped     atomic.Uint64
	// The writer's: records in time order, how many were written, and the
	// last packet's time (never gone back).
	order    orderer
	written  uint64
	lastWall time.Time
}

// A capture's queue holds queueLen records and queueBytes of packet
// bytes at most: 32768 headers-only records, or 21 000 whole 1500-byte
// packets, 1024 of 16 KiB.
const (
	queueLen   = 32768
	queueBytes = 32 << 20
)

// MaxCaptures bounds the captures running at once on a node.
const MaxCaptures = 8

var (
	// ErrNotInstalled: the service is not in this node's data path.
	ErrNotInstalled = errors.New("not installed on this node")
	// ErrBusy: MaxCaptures captures run already.
	ErrBusy = fmt.Errorf("%d captures run on this node already; wait for one to end", MaxCaptures)
)

// Capture runs one capture, writing pcapng to w until its duration or
// count is reached or ctx ends. The stream has one interface, this node's
// capture of the service ("node:service"); each packet's direction is the
// service's (inbound: client to VIP, outbound: VIP to client); its final
// statistics give the packets seen and dropped.
func (h *Hub) Capture(ctx context.Context, req Request, w io.Writer) (Result, error) {
	id, ok := h.dp.ServiceID(req.Service)
	if !ok {
		return Result{}, fmt.Errorf("service %q: %w", req.Service, ErrNotInstalled)
	}
	if req.Share == 0 || req.Share > service.MaxWeight {
		return Result{}, fmt.Errorf("capture share %s: give 0.01%%..100%%", req.Share)
	}
	snap := req.kernelSnap()
	s := &session{Request: req, svcID: id, share: req.Share, kernelSnap: snap, queue: make(chan record, queueLen)}
	// Buffered: nothing reaches w before the first Flush, so a failure
	// up to there leaves w untouched.
	cw, err := capture.NewWriter(w, []capture.Interface{{Node: h.node, Name: req.Service, SnapLen: int(s.kernelSnap)}})
	if err != nil {
		return Result{}, err
	}
	cap0, drop0, err := h.ringCounters(req.Service)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	if err := h.register(s); err != nil {
		return Result{}, fmt.Errorf("start the capture: %w", err)
	}
	// The stream starts once the kernel samples: a reader that sees its
	// first bytes knows new flows from then on are in it.
	werr := cw.Flush()
	if werr == nil {
		werr = h.pump(ctx, s, cw)
	}
	h.unregister(s)
	// The records the kernel wrote before the stop: read them all, so that
	// the counts add up.
	h.drained(time.Second)
	werr = errors.Join(werr, h.flushQueue(s, cw))
	cap1, drop1, err := h.ringCounters(req.Service)
	if err != nil {
		return Result{Written: s.written}, errors.Join(werr, err)
	}
	res := h.result(s, s.written, cap1-cap0, drop1-drop0)
	st := capture.Stats{Start: start, End: time.Now(), Seen: res.Seen, Dropped: res.Dropped, Final: true}
	werr = errors.Join(werr, cw.WriteStats(0, st), cw.Close())
	return res, werr
}

// result accounts for a finished capture: ringCaptured and ringDropped
// are the ring's counts for the service during it. A capture alone on its
// service at its share reads every record the ring took: what it did not
// write it dropped. (Beside a capture at a larger share, the ring's counts
// include that one's records; this one's own count then stands.)
func (h *Hub) result(s *session, written, ringCaptured, ringDropped uint64) Result {
	dropped := s.dropped.Load()
	if s.Count == 0 || written < uint64(s.Count) {
		if seen := ringCaptured + ringDropped; h.alone(s) && seen >= written+ringDropped {
			dropped = seen - written
		} else {
			dropped += ringDropped
		}
	}
	return Result{Written: written, Dropped: dropped, Seen: written + dropped}
}

// alone: no other capture of s's service ran at a larger share, and s
// keeps both pools (the ring's counts are then s's).
func (h *Hub) alone(s *session) bool {
	if s.StableOnly {
		return false // the ring's counts include the canary's flows
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for o := range h.sessions {
		if o.Service == s.Service && o.share > s.share {
			return false
		}
	}
	return true
}

// pump writes records until the capture ends, in time order (orderer);
// it flushes whenever the queue runs empty, so a reader of the stream
// sees packets promptly.
func (h *Hub) pump(ctx context.Context, s *session, cw *capture.Writer) error {
	var done <-chan time.Time
	if s.Duration > 0 {
		t := time.NewTimer(s.Duration)
		defer t.Stop()
		done = t.C
	}
	flush := time.NewTicker(100 * time.Millisecond)
	defer flush.Stop()
	idle := true
	for !s.full() {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			return nil
		case <-flush.C:
			if err := h.emit(s, cw, s.order.take(idle)); err != nil {
				return err
			}
			if err := cw.Flush(); err != nil {
				return err
			}
			idle = true
		case rec := <-s.queue:
			s.queuedBytes.Add(-int64(len(rec.data)))
			idle = false
			s.order.add(rec)
			if err := h.emit(s, cw, s.order.take(false)); err != nil {
				return err
			}
		}
	}
	return nil
}

// flushQueue writes what is left in the queue and the orderer.
func (h *Hub) flushQueue(s *session, cw *capture.Writer) error {
	for {
		select {
		case rec := <-s.queue:
			s.queuedBytes.Add(-int64(len(rec.data)))
			s.order.add(rec)
		default:
			return h.emit(s, cw, s.order.take(true))
		}
	}
}

// emit writes records up to the capture's count.
func (h *Hub) emit(s *session, cw *capture.Writer, recs []record) error {
	for _, rec := range recs {
		if s.full() {
			return nil
		}
		if err := h.write(s, cw, rec); err != nil {
			return err
		}
		s.written++
	}
	return nil
}

// full: the capture wrote its count.
func (s *session) full() bool { return s.Count > 0 && s.written >= uint64(s.Count) }

// write keeps what the request asks of a record, redacts it and writes it.
func (h *Hub) write(s *session, cw *capture.Writer, rec record) error {
	data := rec.data
	switch {
	case s.Payload:
	case s.Snaplen > 0:
		data = data[:min(len(data), s.Snaplen)]
	default:
		data = data[:capture.HeaderLen(data)]
	}
	if s.Redactor != nil {
		if err := s.Redactor.Frame(data, s.Keep); err != nil {
			// An address that cannot be found cannot be hidden: keep the
			// Ethernet header only, never an unredacted address.
			data = data[:min(len(data), 14)]
		}
	}
	dir := capture.Inbound
	if rec.hdr.Dir == uint8(bpf.SteerDirectionDIR_TO_CLIENT) {
		dir = capture.Outbound
	}
	// The clock's offset is sampled anew every second: a new sample may
	// put a packet a fraction of a microsecond before the last one.
	at := h.clock.Wall(rec.hdr.TsNs)
	if at.Before(s.lastWall) {
		at = s.lastWall
	}
	s.lastWall = at
	return cw.WritePacket(capture.Packet{
		Time:      at,
		Direction: dir,
		Data:      data,
		OrigLen:   int(rec.hdr.Len),
	})
}
