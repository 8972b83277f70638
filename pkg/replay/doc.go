// Package replay sends the packets of a pcap or pcapng file out of an
// interface with their recorded timing: `graylanectl replay`.
//
// The pieces, one concern each:
//   - read.go: the capture, pcap or pcapng, into memory, every error naming
//     the packet (and, for pcap, the byte) where the file went wrong;
//   - rewrite.go, csum.go: the destination address and port, outer or the
//     inner packet of GTP-U, with checksums fixed incrementally (RFC 1624);
//   - l2.go: Ethernet addresses from the interface and the kernel's routes
//     and neighbours;
//   - xsk.go: a thin AF_XDP socket that only transmits (no XDP program is
//     needed for that), zero-copy where the driver allows, copy mode else;
//   - launch.go: whether the interface supports AF_XDP TX launch time;
//   - clock.go: the schedule anchored to the replay's start, the wait
//     (sleep, then busy-wait the last microseconds);
//   - stats.go: lag and gap errors, the summary;
//   - replay.go: Run, which ties them together.
package replay
