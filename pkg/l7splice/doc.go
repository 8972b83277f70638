// Package l7splice is the kernel mechanics of delayed binding for L7
// services (issue 22): the gateway accepts a client's TCP connection to an
// L7 frontend itself, the agent reads the first request's head (httphead,
// h2head, tlshello, match), picks a backend, connects to it and writes the
// bytes it read, and then splices the two sockets in the kernel so that
// later bytes do not go through user space. It drives the BPF object in
// bpf/l7; the agent wires it in.
//
// # Design
//
//   - Kernel.AttachClient attaches l7_assign at the TCX ingress of the
//     client-facing interface. A TCP packet to a frontend (AddFrontend) is
//     assigned with bpf_sk_assign to its connection's own socket if it has
//     one (bpf_skc_lookup_tcp: established, request or time-wait), else to
//     the listener of its family (ListenTransparent, sockmap l7_listener).
//     Other packets are left to the next program and the stack.
//   - Kernel.AttachLookup attaches l7_lookup (sk_lookup) to the gateway's
//     network namespace: a listener lookup for a frontend finds the
//     transparent listener. It is what admits a SYN that reuses the tuple
//     of a connection the gateway holds in TIME_WAIT, which l7_assign
//     gives to the time-wait socket (TestTimeWaitReuse).
//   - The listener accepts the connection as VIP:port (LocalAddr), from
//     the client's address (RemoteAddr).
//   - Kernel.Splice(client, backend) puts both sockets in the sockhash
//     l7_targets (no programs), then in l7_socks, whose stream verdict
//     l7_splice redirects every skb a socket receives to its peer's egress
//     (l7_peers maps a socket's cookie to its peer's). The order matters:
//     a socket's verdict runs from the moment it joins l7_socks, and its
//     peer must already be a redirect target. Splice first reads the
//     client's queue dry (the kernel hands the verdict whole skbs only, so
//     a partly read one must not stay queued) and writes what it found to
//     the backend: usually nothing, counted by Pair.UserBytes. After the
//     inserts it sets SO_RCVLOWAT on both sockets, which makes TCP run the
//     verdict on whatever arrived in between (an early response) at once.
//   - A Pair never reads while splicing. A goroutine per socket sleeps in
//     the netpoller (RawConn.Read with a callback that asks TCP_INFO,
//     SO_ERROR and l7_peers, never recv): spliced data wakes nobody, since
//     the verdict takes it before a reader is told; a FIN (state change), a
//     reset (error report) or held data (flow control, below) does.
//   - Close propagation: the verdict drops a bare FIN's empty skb (measured:
//     redirected, it makes the peer's send fail with EPIPE and the pair
//     break), so FINs are forwarded by the Pair. When side A's FIN has come,
//     the Pair waits until B's send queue has taken every byte the verdict
//     redirected from A (l7_peers counts them; bytes_acked + SIOCOUTQ of B,
//     against the same figure when the splice began), then shuts B's write
//     side down. The other direction keeps flowing: a half-close is a
//     half-close (TestCloseClientHalfCloseDrains sends 4 MiB and
//     half-closes at once; every byte arrives before the FIN). Wait returns
//     when both FINs were forwarded. A reset (or a failed send) on one
//     side is forwarded as a reset (SO_LINGER 0 and close) on the other,
//     and Wait returns an error wrapping ErrReset. Close takes the pair out
//     of the maps and closes both sockets.
//   - Flow control (flow.go): the kernel does not bound what a redirect
//     queues for the peer (the skbs wait in the peer's psock for a kworker,
//     charged to no receive buffer). Measured: a client wrote 1 GiB to a
//     backend that read nothing, and during a 1 GiB transfer to a fast
//     backend the gateway held up to 310-520 MiB. Taking a socket out of
//     l7_socks to pause it loses data (measured: 82 760 bytes of 1 GiB: the
//     skbs TCP hands over while the program is removed find none and are
//     dropped). So past Options.MaxInflight bytes held for the peer, the
//     verdict marks the socket held and passes its skbs to its own queue,
//     charged to its receive buffer, and the Pair copies the rest of that
//     direction in user space, in order. Measured: with the default 8 MiB
//     the client writes about 11 MiB to a stalled backend before blocking;
//     without the gateway it writes 0.8-5.7 MiB. One gap is left: a held
//     skb that arrives while its own socket's outgoing psock queue is not
//     empty is queued behind it, uncharged, until that queue drains; a
//     client that neither reads nor stops sending, toward a backend that
//     stops reading, can still grow that queue (read from the kernel
//     source, not measured).
//   - Bounds: Options.MaxPairs pairs (the socket maps hold two entries
//     each); Splice returns ErrFull past it. After every Pair is closed the
//     maps are empty and the process's descriptors are back to where they
//     were (TestManyPairs, 200 pairs at once).
//
// # Kernel requirements
//
// Developed and measured on Linux 6.18 only. Needs TCX (6.6), bpf_sk_assign
// at tc ingress (5.7), a stream verdict without a stream parser, and
// bpf_skc_to_tcp_sock in sk_skb programs with BTF for CO-RE
// (/sys/kernel/btf/vmlinux); CONFIG_BPF_STREAM_PARSER and
// CONFIG_NET_SOCK_MSG. CAP_BPF and CAP_NET_ADMIN.
//
// Routing, measured by TestRouteRequirement: bpf_sk_assign alone is not
// enough, the stack still routes the packet before it reaches the socket.
// The VIP range must be local:
//
//	ip route add local 198.18.100.0/24 dev lo table local
//	ip -6 route add local fd00:6c61:100::/64 dev lo table local
//
// Without a route, the client's SYN is assigned and then answered with
// ICMP net unreachable (connect: ENETUNREACH); with a forwarding route (the
// VIP routed on, as by a default route) it is dropped silently (the stack
// does not forward a packet that has a socket). With the local route the
// listener needs no IP_TRANSPARENT (measured); ListenTransparent sets it
// anyway, for setups that make the VIPs local some other way. No sysctl
// was changed (the lab gateway forwards and has rp_filter 0). The steering
// programs keep NATing L4 services in XDP before the stack sees them; a
// VIP of the local range that has neither an L4 service nor an L7 frontend
// is answered with a RST instead of an ICMP error.
//
// Sockets: a sockmap takes plain TCP sockets only, in state ESTABLISHED
// (or LISTEN). Go (1.24 and later) listens with MPTCP by default, which
// the sockmap refuses (EOPNOTSUPP): ListenTransparent turns MPTCP off. A
// backend that has already sent its FIN when Splice is called (a fast
// response and close) cannot be spliced: Splice fails, the connections are
// left as they were, and the caller copies the rest itself.
//
// # Agent restart
//
// The splice needs no process, but the sockets belong to the agent's
// descriptor table. Measured with a child process (not in the tests): when
// the agent's descriptors of a pair's sockets are closed while another
// process holds them, bytes keep flowing through the kernel; when that
// process dies, the sockets close and the client reads EOF. With the
// sockets open but every BPF descriptor closed, without detaching
// (what the death of the process that loaded them does), the pair keeps
// splicing: l7_socks is freed, but each socket's psock keeps the verdict
// program, which keeps l7_targets and l7_peers; when the sockets close,
// all of it is freed. So when the agent dies, its spliced connections are
// closed with it (FIN to both ends; RST where data was unread), and
// l7_assign is detached with its TCX link: new connections to a frontend
// then meet the stack alone, which answers them with a RST since the VIP
// range is local (reasoned, not measured), until an agent is back.
// Keeping them across a restart would take handing the sockets over
// (systemd's file descriptor store, SCM_RIGHTS) and pinning the maps, and
// the new agent would have to take over every Pair's watching, since FINs
// are forwarded by the agent: not built. What the agent does hand over
// (its listeners, with LinkFiles keeping l7_assign attached meanwhile, and
// AdoptListener in the next agent; connections copied in user space)
// is in the agent's l7_handover.go.
//
// # Numbers
//
// TestSpliceGiB, lab veths on a shared 2-core VM, eight runs: through a
// spliced pair with flow control off, 1 GiB from client to backend runs at
// 0.41-0.51 the throughput of the same transfer routed to the backend's own
// address (5.4-7.3 against 12.9-16.8 Gbit/s), for 1.4-2.2 times the CPU
// time of the whole machine per byte (the kworker that sends redirected
// skbs is not in the agent's getrusage; this test process's own user+sys
// was 1.3-1.8 s per GiB, against 0.8-1.0 s routed, both including the
// client and the sink, which run in it). A Go proxy on the gateway (io.Copy
// both ways, which uses splice(2)) reached 0.70-1.06, for 1.1-1.6 times the
// CPU. With the default MaxInflight the pair went to user space after
// 8-24 MB and ran at 0.55-0.84 (six runs). Our reading of the kernel
// source for why the sockmap is slower here: each redirected skb waits for
// a kworker (sk_psock_backlog) that sends it with a new sendmsg while the
// receiving softirq goes on, which is also why the queue grows. Small
// messages cost more: 64 Ki lines of 64 bytes echoed both ways
// (TestCloseClientHalfCloseDrains) take 2-2.5 s.
package l7splice
