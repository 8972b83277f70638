// Package netlab builds Graylane's test lab: a client, a gateway, a switch
// and stable/canary backends, each in its own network namespace, wired with
// veth pairs. Tests, benchmarks and the demo load Graylane's XDP/TC programs
// on the gateway and send traffic from the client to a VIP.
//
// # Topology
//
// Namespaces are named "<lab>-<host>", the lab being "<prefix><pid>x<n>"
// (e.g. gl1234x0-gw). IPv4 comes from 198.18.0.0/15 (RFC 2544), IPv6 from
// the ULA fd00:6c61::/32.
//
//	 <lab>-cl (client)                  <lab>-gw (gateway)
//	+----------------------------+     +-------------------------------+
//	| eth0 198.18.0.2/24         |veth | cli0 198.18.0.1/24            |
//	|      fd00:6c61:0:1::2/64   |-----|      fd00:6c61:0:1::1/64      |
//	|  + aliases 198.18.0.100+i, |     |                               |
//	|      fd00:6c61:0:1::64+i   |     | forwarding on (v4, v6)        |
//	| 198.18.0.0/15 and          |     | rp_filter 0                   |
//	| fd00:6c61::/32 via gateway |     | 198.19.0.0/16 via 198.18.0.2, |
//	| forwarding off             |     | fd00:6c61:ff::/48 via         |
//	|                            |     |   fd00:6c61:0:1::2 (spoofed)  |
//	+----------------------------+     | bck0 198.18.1.1/24            |
//	                                   |      fd00:6c61:0:2::1/64      |
//	                                   +---------------|---------------+
//	                                                   | veth
//	                                   +---------------|---------------+
//	 <lab>-sw (switch)                 |           port "gw"           |
//	                                   |          br0 (bridge)         |
//	                                   |  port "s0" ...     port "c0"  |
//	                                   +------|-----------------|------+
//	                                          | veth            | veth
//	        +---------------------------------|--+  +-----------|----------------------+
//	        | eth0 198.18.1.10/24                |  | eth0 198.18.1.100/24             |
//	        |      fd00:6c61:0:2::a/64           |  |      fd00:6c61:0:2::64/64        |
//	        | default via 198.18.1.1             |  | default via 198.18.1.1           |
//	        |         and fd00:6c61:0:2::1       |  |         and fd00:6c61:0:2::1     |
//	        +------------------------------------+  +----------------------------------+
//	         <lab>-s0 (stable 0), s1, ...            <lab>-c0 (canary 0), c1, ...
//
// Stable backend i is 198.18.1.(10+i) and fd00:6c61:0:2::(10+i), canary i
// is 198.18.1.(100+i) and fd00:6c61:0:2::(100+i), client alias i is
// 198.18.0.(100+i) and fd00:6c61:0:1::(100+i): the last IPv6 group holds
// the same number as the last IPv4 octet, in hex (10 = ::a, 100 = ::64).
// The variables and functions in addr.go give them all. Service VIPs come
// from 198.18.100.0/24 and fd00:6c61:100::/64 (VIP4, VIP6): the client
// routes them to the gateway, nobody owns them, and without Graylane the
// gateway answers them with ICMP unreachable. The client reaches the
// backends' own addresses through the gateway by plain routing.
//
// Host.Flood forges source addresses from SpoofNet4 and SpoofNet6
// (198.19.0.0/16, fd00:6c61:ff::/48), which nobody owns. The gateway
// routes both back to the client, whose forwarding is off: a backend's
// SYN-ACK or the gateway's ICMP error to a forged source returns into the
// client namespace and is dropped there.
//
// In every namespace: IPv6 DAD is off (addresses are usable at once),
// router advertisements are ignored, IPv6 addresses survive a link going
// down (keep_addr_on_down), rp_filter is 0. The client has
// ip_local_port_range 1024-65000 and tcp_tw_reuse 1. The switch has IPv6
// disabled and multicast snooping off: it only bridges.
//
// # Isolation and cleanup
//
// Every lab interface, address and route exists only inside the lab's
// namespaces: veths are created with both ends directly in their
// namespaces, and nothing is ever configured in the root namespace, so no
// lab traffic can leave the machine. Sockets are created on OS threads
// switched into a host's namespace (Host.Do), and the lab's dialers and
// listeners check each socket's namespace cookie before using it.
//
// Lab.Close deletes the namespaces, which deletes their interfaces. New
// deletes what it built when it fails half-way, and first removes the
// namespaces of labs whose owner process is dead (CleanupStale): a crashed
// run never breaks the next. Lab.CloseOnSignal closes a lab on SIGINT and
// SIGTERM; NewT builds a lab for a test and closes it in t.Cleanup.
//
// # Threads and namespaces
//
// A network namespace belongs to an OS thread, not to a goroutine or a
// process. Host.Do runs a function on a locked thread switched into the
// namespace and switches it back afterwards; load helpers (HelloMany) lock
// one thread per worker and switch it once for all its connections. A
// thread is always switched back before it is unlocked, even at the end of
// a goroutine: the runtime ends a thread whose goroutine exits locked, but
// not the main thread, which any goroutine may be running on; that one is
// parked for good, and parked in a lab namespace it would keep the
// namespace alive after Close. Only if switching back fails does the thread
// stay locked. A socket stays in the namespace it was created in, so the
// returned net.Conn and net.Listener can be used from any goroutine.
//
// # XDP on veth
//
// A frame XDP_REDIRECTed (or XDP_TXed) into a veth is queued to the veth's
// peer, which must have a NAPI context for it: an XDP program of its own,
// or GRO turned on (kernel >= 5.13). Otherwise the frame is dropped, and
// the drop shows only in `ethtool -S` of the device that ran the program
// (rx_queue_N_drops), not in `ip -s link`. Config.VethXDPReady
// turns GRO on for the peers of the gateway's interfaces: the client's eth0
// (peer of cli0) and the switch port "gw" (peer of bck0). Lab.SetTxChecksum
// turns TX checksum offload off on the client and the backends, so their
// frames carry full checksums as a physical NIC's would.
package netlab
