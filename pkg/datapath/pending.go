package datapath

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
)

// The pending table (bpf/include/pending.h) is an array of buckets of
// bpf.SteerPendingLimitsPENDING_WAYS records, a key's bucket chosen by its
// hash. Only the programs write it; Go walks it for the flow list (and the
// tests find a key's bucket as the programs do: pending_hash_test.go).

// pendingWays is the number of records of a bucket.
const pendingWays = uint32(bpf.SteerPendingLimitsPENDING_WAYS)

// pendingBucketsFor is the pending map's size in buckets for a flow table
// of flowTable entries (PendingTableFor records).
func pendingBucketsFor(flowTable uint32) uint32 {
	return PendingTableFor(flowTable) / pendingWays
}

// walkPending calls visit for every record in use of the pending map m,
// a bucket at a time.
func walkPending(m *ebpf.Map, visit func(*bpf.SteerPendingRec)) error {
	var (
		idx uint32
		b   bpf.SteerPendingBucket
	)
	it := m.Iterate()
	for it.Next(&idx, &b) {
		for i := range b.Way {
			if b.Tag[i] != 0 {
				visit(&b.Way[i])
			}
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("walk the pending table: %w", err)
	}
	return nil
}
