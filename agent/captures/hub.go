// Package captures serves the agent's packet captures: one reader drains
// the kernel's capture ring (bpf/include/mirror.h) and hands each record
// to the captures running on this node for its service, which write
// pcapng (package capture). The kernel samples a service's new flows at
// the largest share any of its captures asks for; each capture keeps the
// records of the flows below its own share, so captures of one service at
// different shares run side by side.
package captures

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/capture"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// Datapath is what the hub needs of the data path.
type Datapath interface {
	SetCapture(name string, c datapath.Capture) error
	ServiceID(name string) (uint32, bool)
	MirrorStats(name string) ([2]datapath.MirrorStats, error)
	CaptureRing() *ebpf.Map
}

// Hub drains the capture ring and runs the captures of this node.
type Hub struct {
	dp    Datapath
	clock *capture.Clock
	node  string
	log   *slog.Logger

	mu       sync.Mutex
	sessions map[*session]struct{}
	reader   *ringbuf.Reader
}

// New returns the hub of node name.
func New(dp Datapath, node string, log *slog.Logger) (*Hub, error) {
	clock, err := capture.NewClock()
	if err != nil {
		return nil, fmt.Errorf("capture clock: %w", err)
	}
	rd, err := ringbuf.NewReader(dp.CaptureRing())
	if err != nil {
		return nil, fmt.Errorf("open the capture ring: %w", err)
	}
	return &Hub{dp: dp, clock: clock, node: node, log: log, reader: rd,
		sessions: map[*session]struct{}{}}, nil
}

// Run drains the ring and keeps the clock's offset fresh until ctx ends.
func (h *Hub) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		if err := h.clock.Run(ctx, time.Second); err != nil && ctx.Err() == nil {
			h.log.Warn("capture clock stopped: timestamps drift", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		h.reader.Close()
	}()
	var rec ringbuf.Record
	for {
		// The programs write without waking the reader (a wakeup costs
		// the packet's CPU microseconds): poll. A record waits pollEvery
		// at most; records that are there are read without waiting.
		h.reader.SetDeadline(time.Now().Add(pollEvery))
		err := h.reader.ReadInto(&rec)
		if errors.Is(err, ringbuf.ErrClosed) || ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the capture ring: %w", err)
		}
		h.dispatch(rec.RawSample)
	}
}

// pollEvery is how often the reader looks into an idle ring.
const pollEvery = 5 * time.Millisecond

// record is one ring record, decoded.
type record struct {
	hdr  bpf.SteerCaptureHdr
	data []byte
}

var hdrSize = binary.Size(bpf.SteerCaptureHdr{})

// decodeHeader reads a record's struct capture_hdr (little endian, as the
// kernel of this host wrote it): by hand, as binary.Read's reflection
// would cost more than the rest of a record's way.
func decodeHeader(b []byte) bpf.SteerCaptureHdr {
	le := binary.LittleEndian
	return bpf.SteerCaptureHdr{
		TsNs:    le.Uint64(b[0:]),
		SvcId:   le.Uint32(b[8:]),
		Len:     le.Uint32(b[12:]),
		Ifindex: le.Uint32(b[16:]),
		Snap:    le.Uint16(b[20:]),
		Bucket:  le.Uint16(b[22:]),
		Pool:    b[24],
		Dir:     b[25],
	}
}

// dispatch hands a raw record to the captures of its service that want
// it; a capture whose queue is full counts a drop.
func (h *Hub) dispatch(raw []byte) {
	var r record
	if len(raw) < hdrSize {
		return
	}
	r.hdr = decodeHeader(raw)
	data := raw[hdrSize:]
	if int(r.hdr.Snap) < len(data) {
		data = data[:r.hdr.Snap]
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.sessions {
		if s.svcID != r.hdr.SvcId || uint32(r.hdr.Bucket) >= uint32(s.share) || (s.StableOnly && r.hdr.Pool != 0) {
			continue
		}
		// A capture whose writer lags drops here, counted, rather than
		// hold the reader (and every other capture) back.
		if s.queuedBytes.Load()+int64(len(data)) > queueBytes {
			s.dropped.Add(1)
			continue
		}
		// The reader reuses its buffer: each capture gets its own copy.
		rec := record{hdr: r.hdr, data: bytes.Clone(data)}
		select {
		case s.queue <- rec:
			s.queuedBytes.Add(int64(len(data)))
		default:
			s.dropped.Add(1)
		}
	}
}

// register adds a capture and sets the kernel's sampling for its service.
func (h *Hub) register(s *session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sessions) >= MaxCaptures {
		return ErrBusy
	}
	h.sessions[s] = struct{}{}
	if err := h.dp.SetCapture(s.Service, h.kernelCapture(s.Service)); err != nil {
		delete(h.sessions, s)
		return err
	}
	return nil
}

// unregister removes a capture and lowers (or ends) its service's sampling.
func (h *Hub) unregister(s *session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.sessions, s)
	if err := h.dp.SetCapture(s.Service, h.kernelCapture(s.Service)); err != nil {
		h.log.Warn("end the kernel's capture sampling", "service", s.Service, "err", err)
	}
}

// Active returns how many captures run on this node for each service.
func (h *Hub) Active() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string]int{}
	for s := range h.sessions {
		out[s.Service]++
	}
	return out
}

// kernelCapture is what the captures of service name ask of the kernel
// together: the largest share and the largest snap. h.mu is held.
func (h *Hub) kernelCapture(name string) datapath.Capture {
	var c datapath.Capture
	for s := range h.sessions {
		if s.Service == name {
			c.Share = max(c.Share, s.share)
			c.Snap = max(c.Snap, s.kernelSnap)
		}
	}
	return c
}

// drained waits until the reader has taken every record the ring held
// when it was called, or the wait is over.
func (h *Hub) drained(wait time.Duration) {
	deadline := time.Now().Add(wait)
	for h.reader.AvailableBytes() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// ringCounters sums a service's ring counters over both pools.
func (h *Hub) ringCounters(name string) (captured, dropped uint64, err error) {
	ms, err := h.dp.MirrorStats(name)
	if err != nil {
		return 0, 0, err
	}
	for _, p := range []service.Pool{service.Stable, service.Canary} {
		captured += ms[p].Captured
		dropped += ms[p].CaptureDropped
	}
	return captured, dropped, nil
}
