package capture

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gopacket/gopacket/pcapgo"
)

// Source is one node's capture stream, as this package's Writer writes
// it: one pcapng section, packets in Enhanced Packet Blocks, in time order.
type Source struct {
	Node string // the node's name: the merged file's interfaces are named "Node:interface"
	R    io.Reader
}

// MergeStats says what Merge took from each source, in the order of the
// sources.
type MergeStats struct {
	Sources []SourceStats
}

// SourceStats is what Merge took from one source.
type SourceStats struct {
	Node       string
	Interfaces int    // interfaces the source described
	Packets    uint64 // its packets written to the output
	Statistics int    // its statistics blocks written to the output
	// Err is why the source stopped before its end (a read error or a
	// malformed block, naming the node and the byte), nil if it ended
	// cleanly or the merge stopped first.
	Err error
}

// Merge writes to w one pcapng stream holding every packet of every
// source in time order: a k-way merge that reads a source's next packet
// only when the one before it has been written, so it holds one packet
// per source whatever the streams' lengths. Order within a source is its
// own: a packet earlier than the one before it in the same stream is
// written as it comes, not moved back.
//
// The sources are live: a node's stream grows while its capture runs and
// ends (EOF) when the capture ends. A packet is written only once every
// source that has not ended has a packet waiting or has ended, since a
// source with nothing waiting may still send an earlier one. So a source
// that is silent (its node sees no traffic, or is slow to send) holds the
// whole output back, the section header included, until it sends a packet
// or ends. What is written is flushed to w whenever the merge waits for a
// source.
//
// Each interface of a source becomes an interface of the output named
// "NODE:IFNAME", as a node's own stream names them (the source's Writer
// put "NODE:" in front already; it is added where missing), with its link type and snaplen, and nanosecond
// timestamps. Each packet keeps its epb_flags (its direction) and
// epb_dropcount; other packet options are not carried. The sources'
// statistics blocks (isb_starttime, isb_endtime, isb_ifrecv, isb_ifdrop)
// are written at the end, for the renamed interfaces, in the order they
// were read; they are kept until then (a few dozen bytes each).
//
// A source that fails (its reader errs, or it sends a malformed block)
// ends there: the merge goes on with the others, and Merge returns an
// error naming each failed node, with what it wrote. When ctx is done,
// Merge writes the statistics read so far, flushes and returns ctx's
// error at once; a source's reader blocked in Read is left to return on
// its own (Merge does not close the sources: close them to release it).
// The MergeStats are filled in either way.
func Merge(ctx context.Context, w io.Writer, sources []Source) (MergeStats, error) {
	if err := checkSources(sources); err != nil {
		return MergeStats{}, err
	}
	m := &merger{w: w, done: make(chan struct{})}
	defer close(m.done)
	for _, src := range sources {
		s := &mergeSource{
			Source: src, want: make(chan struct{}, 1), got: make(chan readResult),
			stats: SourceStats{Node: src.Node},
		}
		go s.read(newBlockReader(src.Node, src.R), m.done)
		m.srcs = append(m.srcs, s)
	}
	runErr := m.run(ctx)
	stats := MergeStats{}
	var errs []error
	for _, s := range m.srcs {
		stats.Sources = append(stats.Sources, s.stats)
		errs = append(errs, s.stats.Err)
	}
	return stats, errors.Join(append(errs, runErr)...)
}

// checkSources rejects an empty list, unnamed, ambiguous or duplicate
// nodes and missing readers.
func checkSources(sources []Source) error {
	if len(sources) == 0 {
		return errors.New("capture: merge: no sources")
	}
	seen := make(map[string]int, len(sources))
	for n, s := range sources {
		switch {
		case s.Node == "" || strings.Contains(s.Node, "/") || len(s.Node) > maxIfaceName:
			return fmt.Errorf("capture: merge: source %d: node %q must be set, at most %d bytes, and may not contain '/', which separates node and interface in the output", n, s.Node, maxIfaceName)
		case s.R == nil:
			return fmt.Errorf("capture: merge: source %d (node %s) has no reader", n, s.Node)
		}
		if first, dup := seen[s.Node]; dup {
			return fmt.Errorf("capture: merge: sources %d and %d are both node %s", first, n, s.Node)
		}
		seen[s.Node] = n
	}
	return nil
}

// readResult is one record read from a source, or why there is none.
type readResult struct {
	rec record
	err error
}

// mergeSource is one source as the merge sees it.
type mergeSource struct {
	Source
	want   chan struct{}   // asks the reader for the next record
	got    chan readResult // its answer
	head   *record         // the packet waiting to be written
	ended  bool
	ifaces []int // the source's interface index → the output's
	stats  SourceStats
}

// read reads one record per request until the stream ends, fails or the
// merge is over.
func (s *mergeSource) read(br *blockReader, done <-chan struct{}) {
	for {
		select {
		case <-s.want:
		case <-done:
			return
		}
		rec, err := br.next()
		select {
		case s.got <- readResult{rec, err}:
		case <-done:
			return
		}
		if err != nil {
			return
		}
	}
}

// merger writes the merged stream.
type merger struct {
	w      io.Writer
	done   chan struct{}
	srcs   []*mergeSource
	out    *pcapgo.NgWriter     // nil until every source has a packet waiting or has ended
	ifaces []pcapgo.NgInterface // the output's interfaces, in order
	stats  []pendingStats       // statistics blocks, written at the end
	dirty  bool                 // written since the last flush
	broken bool                 // a write to w failed
}

type pendingStats struct {
	src   *mergeSource
	iface int // the output's
	stats pcapgo.NgInterfaceStatistics
}

// run merges until every source has ended or ctx is done.
func (m *merger) run(ctx context.Context) error {
	for {
		for _, s := range m.srcs {
			if err := m.fill(ctx, s); err != nil {
				return m.finish(err)
			}
		}
		if m.out == nil {
			if err := m.start(); err != nil {
				return m.finish(err)
			}
		}
		s := m.earliest()
		if s == nil {
			return m.finish(nil)
		}
		if err := m.writePacket(s); err != nil {
			return m.finish(err)
		}
	}
}

// fill reads from s until it has a packet waiting or has ended, taking in
// the interface descriptions and statistics on the way. A failing source
// ends; the error returned is ctx's or the output's.
func (m *merger) fill(ctx context.Context, s *mergeSource) error {
	for !s.ended && s.head == nil {
		res, err := m.receive(ctx, s)
		if err != nil {
			return err
		}
		if res.err != nil {
			s.ended = true
			if !errors.Is(res.err, io.EOF) {
				s.stats.Err = res.err
			}
			return nil
		}
		switch rec := res.rec; rec.kind {
		case recInterface:
			if err := m.addInterface(s, rec); err != nil {
				return err
			}
		case recStats:
			m.stats = append(m.stats, pendingStats{src: s, iface: s.ifaces[rec.iface], stats: rec.stats})
		case recPacket:
			s.head = &rec
		}
	}
	return nil
}

// receive asks s's reader for its next record and waits for it, flushing
// the output first if it is not there yet.
func (m *merger) receive(ctx context.Context, s *mergeSource) (readResult, error) {
	if err := ctx.Err(); err != nil {
		return readResult{}, fmt.Errorf("capture: merge: %w", err)
	}
	s.want <- struct{}{}
	select {
	case res := <-s.got:
		return res, nil
	default:
	}
	if err := m.flush(); err != nil {
		return readResult{}, err
	}
	select {
	case res := <-s.got:
		return res, nil
	case <-ctx.Done():
		return readResult{}, fmt.Errorf("capture: merge: waiting for node %s: %w", s.Node, ctx.Err())
	}
}

// earliest is the source whose waiting packet is the earliest (the first
// such source on a tie), nil when no packet is waiting.
func (m *merger) earliest() *mergeSource {
	var first *mergeSource
	for _, s := range m.srcs {
		if s.head != nil && (first == nil || s.head.at < first.head.at) {
			first = s
		}
	}
	return first
}
