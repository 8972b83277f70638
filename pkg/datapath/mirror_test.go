package datapath

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// flowFlags reads the flags of a web flow of client.
func flowFlags(t *testing.T, dp *Datapath, client netip.AddrPort) uint8 {
	t.Helper()
	v, err := lookupFlow(dp, webFlowKey(client))
	if err != nil {
		t.Fatalf("flow of %s: %v", client, err)
	}
	return v.Flags
}

const (
	flagMirror  = uint8(bpf.SteerFlowFlagsFLOW_F_MIRROR)
	flagCapture = uint8(bpf.SteerFlowFlagsFLOW_F_CAPTURE)
)

// TestMirrorSampling steers 20 000 new flows through tc_client with a 10 %
// capture share and a 50 % canary weight: the sampled share is 10 %
// within 4σ overall and within each pool (the sample is independent of
// the split). For a service keyed by the client address, 20 000 flows of
// one client are sampled one by one: 10 % of them, not all or none.
func TestMirrorSampling(t *testing.T) {
	f := newFixture(t)
	for _, kind := range []service.KeyKind{service.KeyFlow, service.KeyClient} {
		t.Run(kind.String(), func(t *testing.T) { testMirrorSampling(t, f, kind) })
	}
}

func testMirrorSampling(t *testing.T, f *fixture, kind service.KeyKind) {
	svc := webService("web", vip4, service.TCP, 5000)
	svc.Key = kind
	if err := f.dp.Apply([]service.Service{svc}); err != nil {
		t.Fatal(err)
	}
	if err := f.dp.SetCapture("web", Capture{Share: 1000, Snap: 128}); err != nil {
		t.Fatal(err)
	}
	const n = 20000
	sampled := [2]int{}
	flows := [2]int{}
	for i := range n {
		client := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 14), byte(i >> 6)}), uint16(20000+i))
		if kind == service.KeyClient {
			client = netip.AddrPortFrom(client4, uint16(20000+i))
		}
		if v, _ := f.run(t, hookTC, false, f.cliIf, buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN})); v != vRedirect && v != vPass {
			t.Fatalf("flow %d: verdict %v", i, v)
		}
		key := webFlowKey(client)
		key.Kind = uint8(kind)
		fl, err := lookupFlow(f.dp, key)
		if err != nil {
			t.Fatal(err)
		}
		flows[fl.Pool&1]++
		if fl.Flags&flagCapture != 0 {
			sampled[fl.Pool&1]++
		}
		if fl.Flags&flagMirror != 0 {
			t.Fatalf("flow %d marked for an interface the service has none", i)
		}
	}
	within4σ(t, "all flows", sampled[0]+sampled[1], n, 0.10)
	if kind == service.KeyFlow {
		within4σ(t, "stable flows", sampled[0], flows[0], 0.10)
		within4σ(t, "canary flows", sampled[1], flows[1], 0.10)
	}
	t.Logf("sampled %d of %d flows (stable %d/%d, canary %d/%d)", sampled[0]+sampled[1], n, sampled[0], flows[0], sampled[1], flows[1])
	if err := f.dp.SetCapture("web", Capture{}); err != nil {
		t.Fatal(err)
	}
}

// within4σ fails unless got of n is within 4 standard deviations of p·n.
func within4σ(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	want := p * float64(n)
	sigma := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-want) > 4*sigma {
		t.Errorf("%s: %d of %d sampled, want %.0f ± %.0f (4σ)", what, got, n, want, 4*sigma)
	}
}

// captureRecord is one record read from the capture ring.
type captureRecord struct {
	hdr  bpf.SteerCaptureHdr
	data []byte
}

func readCaptureRecords(t *testing.T, dp *Datapath, want int) []captureRecord {
	t.Helper()
	rd, err := ringbuf.NewReader(dp.CaptureRing())
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var out []captureRecord
	for {
		rd.SetDeadline(time.Now().Add(200 * time.Millisecond))
		rec, err := rd.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var r captureRecord
		if err := binary.Read(bytes.NewReader(rec.RawSample), binary.LittleEndian, &r.hdr); err != nil {
			t.Fatal(err)
		}
		r.data = rec.RawSample[binary.Size(r.hdr):]
		if len(r.data) < int(r.hdr.Snap) {
			t.Fatalf("record of %d bytes says snap %d", len(r.data), r.hdr.Snap)
		}
		r.data = r.data[:r.hdr.Snap]
		out = append(out, r)
	}
	if len(out) != want {
		t.Fatalf("read %d capture records, want %d", len(out), want)
	}
	return out
}

// TestCaptureRecords follows one flow at each hook, client and backend
// side, into the ring: the records hold the packets as the client saw
// them (VIP as destination, then as source), cut at the snap, with their
// direction, pool, service and length; a flow that started before the
// capture, or in an earlier capture, is not recorded.
func TestCaptureRecords(t *testing.T) {
	f := newFixture(t)
	svc := oneBackendWeb()
	if err := f.dp.Apply([]service.Service{svc}); err != nil {
		t.Fatal(err)
	}
	id, _ := f.dp.ServiceID("web")
	backend := svc.Stable[0].Addr
	before := netip.AddrPortFrom(client4, 30000)
	syn := func(c netip.AddrPort) []byte {
		return buildPacket(pktSpec{src: c, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN, payload: bytes.Repeat([]byte{'x'}, 200)})
	}
	f.run(t, hookTC, false, f.cliIf, syn(before))
	ack := func(c netip.AddrPort) []byte {
		return buildPacket(pktSpec{src: c, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpACK})
	}
	if err := f.dp.SetCapture("web", Capture{Share: service.MaxWeight, Snap: 100}); err != nil {
		t.Fatal(err)
	}
	for i, h := range []hook{hookTC, hookXDP} {
		client := netip.AddrPortFrom(client4, uint16(30001+i))
		in := syn(client)
		f.run(t, h, false, f.cliIf, in)
		f.run(t, h, false, f.cliIf, ack(before)) // started before the capture
		reply := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpSYN | tcpACK})
		f.run(t, h, true, f.bckIf, reply)
		// The client's view: the VIP as source, before the hop (MACs, TTL).
		seen := buildPacket(pktSpec{src: netip.AddrPortFrom(vip4, 80), dst: client, proto: protoTCP, tcpFlags: tcpSYN | tcpACK})
		recs := readCaptureRecords(t, f.dp, 2)
		if got := recs[0]; got.hdr.Dir != uint8(bpf.SteerDirectionDIR_TO_BACKEND) || got.hdr.SvcId != id ||
			got.hdr.Len != uint32(len(in)) || !bytes.Equal(got.data, in[:100]) {
			t.Errorf("%v: client-side record %+v, data %x; want the SYN as sent, cut at 100", h, got.hdr, got.data)
		}
		if got := recs[1]; got.hdr.Dir != uint8(bpf.SteerDirectionDIR_TO_CLIENT) || !bytes.Equal(got.data, seen) {
			t.Errorf("%v: backend-side record %+v, data %x; want the reply with the VIP as source %x", h, got.hdr, got.data, seen)
		}
	}
	// A new capture is a new epoch: the flows of the last one are not in it.
	if err := f.dp.SetCapture("web", Capture{}); err != nil {
		t.Fatal(err)
	}
	f.run(t, hookTC, false, f.cliIf, ack(netip.AddrPortFrom(client4, 30001)))
	readCaptureRecords(t, f.dp, 0)
	if err := f.dp.SetCapture("web", Capture{Share: service.MaxWeight, Snap: 100}); err != nil {
		t.Fatal(err)
	}
	f.run(t, hookTC, false, f.cliIf, ack(netip.AddrPortFrom(client4, 30002))) // of the last capture
	f.run(t, hookTC, false, f.cliIf, syn(netip.AddrPortFrom(client4, 30003)))
	recs := readCaptureRecords(t, f.dp, 1)
	if recs[0].hdr.Len != uint32(len(syn(before))) {
		t.Errorf("the record is of a %d-byte packet, want the new flow's SYN", recs[0].hdr.Len)
	}
	ms, err := f.dp.MirrorStats("web")
	if err != nil {
		t.Fatal(err)
	}
	if ms[service.Stable].Captured != 5 || ms[service.Stable].CaptureDropped != 0 {
		t.Errorf("counters %+v, want 5 captured, 0 dropped", ms[service.Stable])
	}
}

// TestMirrorInterface mirrors a service to a veth of the fixture's
// namespace: a packet socket on its peer receives the client's packet as
// sent (before the DNAT), cut to the snaplen by tc_mirror_out, and the
// reply with the VIP as source; a service whose mirror interface is
// missing steers and reports it.
func TestMirrorInterface(t *testing.T) {
	f, sock := newMirrorFixture(t)
	svc := oneBackendWeb()
	svc.Mirror = &service.Mirror{Percent: service.MaxWeight, To: mirrorVeth, Snaplen: 80}
	other := webService("other", vip6, service.TCP, 0)
	other.Mirror = &service.Mirror{Percent: service.MaxWeight, To: "glmissing0"}
	var err error
	if err = f.inNS(func() error { return f.dp.Apply([]service.Service{svc, other}) }); err != nil {
		t.Fatal(err)
	}
	if p := f.dp.MirrorProblems(); p["other"] == "" || p["web"] != "" {
		t.Errorf("mirror problems %v: want one for other (its interface is missing), none for web", p)
	}
	client := netip.AddrPortFrom(client4, 31000)
	in := buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN, payload: bytes.Repeat([]byte{'y'}, 300)})
	if v, _ := f.run(t, hookTC, false, f.cliIf, in); v != vRedirect {
		t.Fatalf("verdict %v, want the flow steered", v)
	}
	got := readPacket(t, sock)
	if !bytes.Equal(got, in[:80]) {
		t.Errorf("mirror copy %x\nwant the SYN as the client sent it, cut at 80: %x", got, in[:80])
	}
	if flowFlags(t, f.dp, client)&flagMirror == 0 {
		t.Error("the flow is not marked for the mirror")
	}
	ms, _ := f.dp.MirrorStats("web")
	if ms[service.Stable].Copies != 1 || ms[service.Stable].CopyFailed != 0 {
		t.Errorf("counters %+v, want one copy", ms[service.Stable])
	}
	stats, _ := f.dp.Stats()
	if stats["mirror_truncated"] != 1 {
		t.Errorf("truncations counted %d, want 1", stats["mirror_truncated"])
	}
}

// newMirrorFixture is a fixture with the mirror veth mirrorVeth and a
// packet socket reading its peer.
func newMirrorFixture(t *testing.T) (*fixture, int) {
	t.Helper()
	f := newFixture(t)
	var sock int
	if err := f.inNS(func() error {
		addMirrorVeth(t, mirrorVeth, true)
		var err error
		sock, err = packetSocket(mirrorVeth + "p")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(sock) })
	return f, sock
}

// packetSocket opens an AF_PACKET socket on ifname, in the calling
// thread's namespace, that gives up after a second without a frame.
func packetSocket(ifname string) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return 0, err
	}
	link, err := interfaceIndex(ifname)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link})
	}
	if err == nil {
		err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1})
	}
	if err != nil {
		unix.Close(fd)
		return 0, err
	}
	return fd, nil
}

func readPacket(t *testing.T, fd int) []byte {
	t.Helper()
	buf := make([]byte, 65536)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		t.Fatalf("no mirror copy: %v", err)
	}
	return buf[:n]
}

func interfaceIndex(name string) (int, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, err
	}
	return l.Attrs().Index, nil
}

// TestMirrorShareConcernsNewFlows: lowering a service's interface share
// to 0 % leaves the flows sampled before it copied to their end, and no
// new flow is sampled; turning mirroring off stops every copy.
func TestMirrorShareConcernsNewFlows(t *testing.T) {
	f, _ := newMirrorFixture(t)
	svc := oneBackendWeb()
	apply := func(m *service.Mirror) {
		t.Helper()
		svc.Mirror = m
		if err := f.inNS(func() error { return f.dp.Apply([]service.Service{svc}) }); err != nil {
			t.Fatal(err)
		}
	}
	send := func(port uint16, flags uint8) {
		t.Helper()
		pkt := buildPacket(pktSpec{src: netip.AddrPortFrom(client4, port), dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: flags})
		f.run(t, hookTC, false, f.cliIf, pkt)
	}
	copies := func() uint64 {
		t.Helper()
		ms, err := f.dp.MirrorStats("web")
		if err != nil {
			t.Fatal(err)
		}
		return ms[service.Stable].Copies
	}
	apply(&service.Mirror{Percent: service.MaxWeight, To: mirrorVeth})
	send(32000, tcpSYN)
	apply(&service.Mirror{Percent: 0, To: mirrorVeth})
	send(32001, tcpSYN) // a new flow at 0 %
	send(32000, tcpACK) // the old flow goes on
	if got := copies(); got != 2 {
		t.Errorf("%d copies, want 2: the old flow's SYN and ACK, none of the new flow", got)
	}
	if flowFlags(t, f.dp, netip.AddrPortFrom(client4, 32001))&flagMirror != 0 {
		t.Error("a flow that started at 0 % is marked for the mirror")
	}
	apply(nil)
	send(32000, tcpACK)
	if got := copies(); got != 2 {
		t.Errorf("%d copies after mirroring was turned off, want still 2", got)
	}
}

// TestFlows lists a service's live flows from the kernel's table: every
// one of them with its backend and pool, those of one client, at most the
// limit with the whole count, none of another service; a mirrored flow
// says so.
func TestFlows(t *testing.T) {
	f, _ := newMirrorFixture(t)
	web := oneBackendWeb()
	web.Mirror = &service.Mirror{Percent: service.MaxWeight, To: mirrorVeth}
	other := webService("other", vip6, service.TCP, 0)
	if err := f.inNS(func() error { return f.dp.Apply([]service.Service{web, other}) }); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		client := netip.AddrPortFrom(client4, uint16(33000+i))
		f.run(t, hookTC, false, f.cliIf, buildPacket(pktSpec{src: client, dst: netip.AddrPortFrom(vip4, 80), proto: protoTCP, tcpFlags: tcpSYN}))
	}
	f.run(t, hookTC, false, f.cliIf, buildPacket(pktSpec{src: netip.AddrPortFrom(client6, 33000), dst: netip.AddrPortFrom(vip6, 80), proto: protoTCP, tcpFlags: tcpSYN}))
	flows, total, err := f.dp.Flows("web", netip.Addr{}, 3)
	if err != nil || total != 5 || len(flows) != 3 {
		t.Fatalf("Flows(web, limit 3) = %d flows of %d (%v), want 3 of 5", len(flows), total, err)
	}
	for _, fl := range flows {
		if fl.Client.Addr() != client4 || fl.Backend != web.Stable[0].Addr || fl.Pool != service.Stable || fl.State != "connecting" || !fl.Mirrored {
			t.Errorf("flow %+v: want a connecting, mirrored flow of %s to %s", fl, client4, web.Stable[0].Addr)
		}
	}
	if _, total, _ := f.dp.Flows("web", client6, 10); total != 0 {
		t.Errorf("%d flows of web from %s, want none", total, client6)
	}
	if flows, total, _ := f.dp.Flows("other", client6, 10); total != 1 || flows[0].Mirrored {
		t.Errorf("other's flows %+v (%d), want one, not mirrored", flows, total)
	}
	if _, _, err := f.dp.Flows("nothere", netip.Addr{}, 10); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("flows of an unknown service: %v", err)
	}
}
