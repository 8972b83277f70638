package agent

import (
	"fmt"

	"github.com/graylane/graylane/pkg/stitch"
)

// With l7.splice: stitch the agent copies an L7 connection until its
// first response has been seen, then stitches it (package stitch): the
// stitch program, first at the TCX ingress of every client- and
// backend-facing interface, rewrites the connection's packets from one TCP
// connection into the other, and the agent's two sockets are closed
// silently. Stitched connections do not survive the agent: when it stops
// (or hands over at a restart) the program goes, and their next packets
// meet a stack without their sockets, which resets them.

// openStitch loads the stitch program and attaches it to the interfaces
// named.
func openStitch(ifaces []string) (*stitch.Kernel, error) {
	k, err := stitch.Open(stitch.Options{})
	if err != nil {
		return nil, fmt.Errorf("L7 services, l7.splice stitch: %w", err)
	}
	if _, err := attachEach(ifaces, k.Attach, k.Detach); err != nil {
		k.Close()
		return nil, fmt.Errorf("L7 services, l7.splice stitch: attach to %w", err)
	}
	return k, nil
}
