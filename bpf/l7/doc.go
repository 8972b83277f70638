// Package l7 holds the kernel side of delayed binding for L7 services
// (issue 22): the programs and maps that let the agent terminate a
// client's TCP connection itself, read the first request's head, and then
// splice the client's socket to a backend's socket so that no later byte
// goes through user space. pkg/l7splice loads and drives them.
//
// l7.c has two parts:
//
//   - l7_assign, a tc ingress program (attached with TCX to the interface
//     facing clients): a TCP packet whose destination is an L7 frontend
//     (map l7_frontends) is assigned with bpf_sk_assign to its connection's
//     own socket if one exists, else to the agent's transparent listening
//     socket (sockmap l7_listener, slot from the frontend's value). Every
//     other packet is left to the stack untouched.
//   - l7_splice, an sk_skb stream verdict program attached to the sockhash
//     l7_socks: every skb a spliced socket receives is redirected to the
//     egress of its peer, found through l7_peers (cookie to peer cookie)
//     and the sockhash l7_targets; once the peer holds more than
//     max_inflight bytes unacknowledged, the socket is held and its later
//     skbs stay in its own queue for user space (see l7.c, Backpressure).
//
// The generated files (l7_bpfel.go, l7_bpfel.o) are committed so that
// `go build` needs no clang; `make generate` rebuilds them with the pinned
// toolchain (bpf2go.sh, built the same way as ../bpf2go.sh builds
// steer.c). Every type that crosses the kernel boundary is generated
// (bpf2go -type, listed in bpf2go.sh) from l7.h.
package l7

//go:generate bash bpf2go.sh
