package datapath

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/graylane/graylane/bpf"
)

// Sequence numbers of the handshakes establish plays.
const (
	clientISN  = 7
	backendISN = 5000
)

// establish opens a TCP flow from client to vip through hook h as a real
// handshake does: the client's SYN, the backend's SYN-ACK, the client's
// ACK of it, which confirms the flow (it moves from the pending table to
// the flow table). It returns the backend the flow went to. The client's
// next data starts at sequence clientISN+1.
func (f *fixture) establish(t testing.TB, h hook, client, vip netip.AddrPort) netip.AddrPort {
	t.Helper()
	syn := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: clientISN})
	v, out := f.run(t, h, false, f.cliIf, syn)
	if v == vPass || v == vDrop {
		t.Fatalf("%s: the SYN of %s: %s", h, client, v)
	}
	d, err := decode(out)
	if err != nil {
		t.Fatalf("%s: the SYN of %s: %v", h, client, err)
	}
	backend := d.dst
	synAck := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpSYN | tcpACK, seq: backendISN, ack: clientISN + 1})
	if v, _ := f.run(t, h, true, f.bckIf, synAck); v == vPass || v == vDrop {
		t.Fatalf("%s: the SYN-ACK of %s from %s: %s", h, client, backend, v)
	}
	confirmed := f.stat(t, "flow_confirmed")
	v, out = f.run(t, h, false, f.cliIf, establishedSegment(client, vip, 0, nil))
	if d, _ := decode(out); v == vPass || v == vDrop || d.dst != backend {
		t.Fatalf("%s: the ACK of %s: %s to %s, want to %s", h, client, v, d.dst, backend)
	}
	if f.stat(t, "flow_confirmed") != confirmed+1 {
		t.Fatalf("%s: %s's flow was not confirmed by its handshake", h, client)
	}
	return backend
}

// establishedSegment is a client segment of a flow establish opened: an
// ACK of the backend's SYN-ACK, after the client's first n bytes, with
// payload.
func establishedSegment(client, vip netip.AddrPort, n uint32, payload []byte) []byte {
	flags := uint8(tcpACK)
	if len(payload) > 0 {
		flags |= tcpPSH
	}
	return buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: flags, seq: clientISN + 1 + n, ack: backendISN + 1, payload: payload})
}

// lookupFlow reads key's entry from the flow table, or from the pending
// table when the flow is not confirmed yet.
func lookupFlow(dp *Datapath, key bpf.SteerFlowKey) (bpf.SteerFlow, error) {
	var fl bpf.SteerFlow
	err := dp.objs.Flows.Lookup(key, &fl)
	if err == nil {
		return fl, nil
	}
	fl, perr := lookupPending(dp.objs.Pending, key)
	if perr != nil {
		return fl, errors.Join(err, perr)
	}
	return fl, nil
}
