// Package capture writes the packets a Graylane capture samples to pcapng
// (issue 18, CONTRACT.md "graylanectl capture").
//
// A capture file holds one section: an Interface Description Block per
// (node, interface) the capture covers, named "node:iface" (for example
// "gw1:eth0"), Ethernet, nanosecond resolution, with the capture's snaplen;
// then one Enhanced Packet Block per captured packet, carrying its captured
// and original length (a truncated copy keeps its length on the wire), its
// direction in epb_flags (inbound: client toward the VIP; outbound: the
// replies) and, when packets were lost just before it, their number in
// epb_dropcount; and Interface Statistics Blocks whose isb_ifrecv (packets
// sampled) and isb_ifdrop (packets lost) make captured + dropped = seen
// readable from the file itself.
//
// The BPF programs stamp packets with bpf_ktime_get_ns, which is
// CLOCK_MONOTONIC. A Clock turns those stamps into wall-clock time: it
// samples the offset between CLOCK_REALTIME and CLOCK_MONOTONIC with a read
// bracketed by two monotonic reads (the tightest of a few tries), samples
// it again periodically so NTP slewing and steps are followed, and converts
// each stamp with the offset sampled last before the packet's own moment,
// so a packet drained late from a ring keeps the offset of its own time.
//
// HeaderLen says how many bytes of a frame a headers-only capture keeps:
// through the L4 header, and for a GTP-U G-PDU through the inner packet's
// L4 header. Merge joins the live streams of several nodes' captures into
// one file in time order, each node's interfaces named "node:iface" as a
// node's own stream names them.
package capture
