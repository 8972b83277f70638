package cluster

import (
	"fmt"

	"github.com/graylane/graylane/pkg/service"
)

// checkCapacity refuses a state that no node's kernel could hold: more
// services, more pins over all services, or more backends in a pool than
// every node's maps hold (service.Node*, service.MaxBackendsPerPool). A
// state beyond them would be committed and then fail on every kernel.
// The error is a *LimitError naming the limit and the count.
func checkCapacity(next *State) error { return checkCapacityFrom(nil, next) }

// checkCapacityFrom is checkCapacity for a change from prev: with prev
// (nil: none), a count already beyond its limit that the change does not
// raise passes, so a state committed by an agent without this check can
// still take deletions, rollbacks and weight changes.
func checkCapacityFrom(prev, next *State) error {
	was := capacityOf(prev)
	now := capacityOf(next)
	for _, c := range []struct {
		what         string
		before, then int
		limit        int
		why          string
	}{
		{"services", was.services, now.services, service.NodeMaxServices, ""},
		{"pins", was.pins, now.pins, service.NodeMaxPins,
			fmt.Sprintf(" (its pin table of %d keeps room for one service's %d pins to be replaced)", service.NodePinTable, service.MaxPins)},
	} {
		if c.then > c.limit && (prev == nil || c.then > c.before) {
			return &LimitError{Err: fmt.Errorf("the state would hold %d %s; every kernel holds at most %d%s: delete some first", c.then, c.what, c.limit, c.why)}
		}
	}
	for _, name := range now.names {
		s := next.Services[name]
		for _, pool := range []service.Pool{service.Stable, service.Canary} {
			if n := len(s.Backends(pool)); n > service.MaxBackendsPerPool {
				return &LimitError{Err: fmt.Errorf("service %q: spec.%s.backends: the state would hold %d backends in the pool; every kernel's lookup table holds at most %d", name, pool, n, service.MaxBackendsPerPool)}
			}
		}
	}
	return nil
}

// capacity is what a state asks of every kernel.
type capacity struct {
	services int
	pins     int // over all services: each pin is one entry of the pin table
	names    []string
}

func capacityOf(st *State) capacity {
	var c capacity
	if st == nil {
		return c
	}
	for _, s := range st.ServiceList() {
		c.services++
		c.pins += len(s.Pins)
		c.names = append(c.names, s.Name)
	}
	return c
}
