package captures

import "sort"

// reorderWindow is how far back in kernel time a record may arrive after
// a later one. The ring holds records in the order the CPUs wrote them,
// each stamped a moment before: two CPUs can swap a few hundred
// nanoseconds. A record is written once one this much newer has arrived,
// or once the queue is idle.
const reorderWindow = 2_000_000 // ns

// orderer puts a capture's records back in time order.
type orderer struct {
	pending []record // by hdr.TsNs
	newest  uint64
}

// add files r; almost always at the end.
func (o *orderer) add(r record) {
	ts := r.hdr.TsNs
	o.newest = max(o.newest, ts)
	i := len(o.pending)
	if i > 0 && o.pending[i-1].hdr.TsNs > ts {
		i = sort.Search(len(o.pending), func(j int) bool { return o.pending[j].hdr.TsNs > ts })
	}
	o.pending = append(o.pending, record{})
	copy(o.pending[i+1:], o.pending[i:])
	o.pending[i] = r
}

// take removes and returns the records that no later arrival can precede
// (all of them if all is set).
func (o *orderer) take(all bool) []record {
	n := len(o.pending)
	if !all {
		n = sort.Search(len(o.pending), func(j int) bool { return o.pending[j].hdr.TsNs+reorderWindow > o.newest })
	}
	out := o.pending[:n:n]
	o.pending = o.pending[n:]
	return out
}
