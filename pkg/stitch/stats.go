package stitch

import (
	"errors"
	"fmt"
	"sync"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
)

// Stats are what a Kernel did since it was opened, for metrics.
type Stats struct {
	// Stitched is how many connections are stitched now (joined or
	// adopted, and not yet removed by Wait).
	Stitched int64
	// Joins counts Join's outcomes: "stitched", and why a connection
	// was not: "not_quiet" (an attempt; the caller may try again),
	// "ending", "full", "incompatible", "failed"; and "closing": not
	// tried, the connection ends with its first response (Skipped).
	Joins map[string]uint64
	// Packets counts what the program did, by event: "stitched"
	// (rewritten and sent on), "no_route", "bad_header" (dropped),
	// "held_drop", "held_kept" (a held pair's segments), "port_reused",
	// "syn_drop".
	Packets map[string]uint64
	// Accepts are the kernel accept's counters (accept.go), by event.
	Accepts map[string]uint64
}

// JoinOutcomes are the keys of Stats.Joins, every one always present.
var JoinOutcomes = []string{"stitched", "not_quiet", "ending", "full", "incompatible", "failed", "closing"}

// packetEvents names the program's counters (enum stat in stitch.h).
var packetEvents = map[stitchbpf.StitchStat]string{
	stitchbpf.StitchStatSTAT_STITCHED:   "stitched",
	stitchbpf.StitchStatSTAT_NO_ROUTE:   "no_route",
	stitchbpf.StitchStatSTAT_BAD_HEADER: "bad_header",
	stitchbpf.StitchStatSTAT_HELD_DROP:  "held_drop",
	stitchbpf.StitchStatSTAT_REUSED:     "port_reused",
	stitchbpf.StitchStatSTAT_SYN_DROP:   "syn_drop",
	stitchbpf.StitchStatSTAT_HELD_KEPT:  "held_kept",
}

// acceptEvents names the kernel accept's counters (enum stat in stitch.h).
var acceptEvents = map[stitchbpf.StitchStat]string{
	stitchbpf.StitchStatSTAT_ACCEPT_SYN:          "syn_cookie",
	stitchbpf.StitchStatSTAT_ACCEPT_SYN_PASSED:   "syn_passed",
	stitchbpf.StitchStatSTAT_ACCEPT_ACK_DROP:     "ack_dropped",
	stitchbpf.StitchStatSTAT_ACCEPT_OPENED:       "opened",
	stitchbpf.StitchStatSTAT_ACCEPT_LIVE:         "live",
	stitchbpf.StitchStatSTAT_ACCEPT_FULL:         "full",
	stitchbpf.StitchStatSTAT_ACCEPT_RESET:        "reset",
	stitchbpf.StitchStatSTAT_ACCEPT_OPENING_DROP: "opening_drop",
	stitchbpf.StitchStatSTAT_ACCEPT_BACKEND_FAIL: "backend_failed",
	stitchbpf.StitchStatSTAT_ACCEPT_CLASH:        "clash",
	stitchbpf.StitchStatSTAT_ACCEPT_HANDED:       "handed",
	stitchbpf.StitchStatSTAT_ACCEPT_SOCKET:       "to_socket",
	stitchbpf.StitchStatSTAT_ACCEPT_SYN_RESENT:   "syn_resent",
}

// counts is a Kernel's own bookkeeping for Stats.
type counts struct {
	mu       sync.Mutex
	stitched int64
	joins    map[string]uint64
}

func (c *counts) join(err error) {
	outcome := "stitched"
	switch {
	case err == nil:
	case errors.Is(err, ErrNotQuiet):
		outcome = "not_quiet"
	case errors.Is(err, ErrEnding):
		outcome = "ending"
	case errors.Is(err, ErrFull):
		outcome = "full"
	case errors.Is(err, ErrIncompatible):
		outcome = "incompatible"
	default:
		outcome = "failed"
	}
	c.count(outcome)
	if err == nil {
		c.add(1)
	}
}

func (c *counts) count(outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.joins == nil {
		c.joins = map[string]uint64{}
	}
	c.joins[outcome]++
}

// Skipped counts a connection its caller did not try to stitch, for why
// (one of JoinOutcomes).
func (k *Kernel) Skipped(why string) { k.counts.count(why) }

func (c *counts) add(n int64) {
	c.mu.Lock()
	c.stitched += n
	c.mu.Unlock()
}

// Stats reads k's numbers: its own, and the program's per-CPU counters
// summed.
func (k *Kernel) Stats() (Stats, error) {
	st := Stats{Joins: map[string]uint64{}, Packets: map[string]uint64{}, Accepts: map[string]uint64{}}
	k.counts.mu.Lock()
	st.Stitched = k.counts.stitched
	for _, o := range JoinOutcomes {
		st.Joins[o] = k.counts.joins[o]
	}
	k.counts.mu.Unlock()
	var perCPU []uint64
	for _, set := range []struct {
		names map[stitchbpf.StitchStat]string
		into  map[string]uint64
	}{{packetEvents, st.Packets}, {acceptEvents, st.Accepts}} {
		for stat, name := range set.names {
			if err := k.objs.StitchStats.Lookup(uint32(stat), &perCPU); err != nil {
				return st, fmt.Errorf("stitch: read counter %s: %w", name, err)
			}
			var sum uint64
			for _, v := range perCPU {
				sum += v
			}
			set.into[name] = sum
		}
	}
	return st, nil
}
