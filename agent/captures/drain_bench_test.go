package captures

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/capture"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkCaptureDrain finds the sampled packet rate at which a capture
// starts to drop, on this machine: a real data path, its tc client
// program run by BPF_PROG_TEST_RUN on a packet of a flow captured at
// 100 % (each run writes one record to the ring, as a packet on the wire
// would), paced at each offered rate for a second (a run is a system
// call: the generator reaches a few hundred thousand a second at most;
// pkts/s reports what it offered), while the hub drains
// the ring into one capture writing pcapng to io.Discard. Per rate and
// record size (headers only, whole 1500-byte packets) it reports the
// packets offered per second and the share dropped (ring full, or the
// capture's queue full). Both run on this machine's two cores: the
// packets' CPU time is the generator's, as softirq time would be.
//
//	go test -run XXX -bench CaptureDrain -benchtime 1x ./agent/captures
func BenchmarkCaptureDrain(b *testing.B) {
	testenv.RequirePrivileges(b)
	dp, err := datapath.New(datapath.Options{FlowTable: 1 << 16, MaxServices: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	vip, backend := netip.MustParseAddr("198.18.100.1"), netip.MustParseAddrPort("198.18.1.10:8080")
	svc := service.Service{Name: "web", VIP: vip, Port: 80, Protocol: service.TCP, Key: service.KeyFlow,
		Stable: []service.Backend{{Addr: backend}}}
	if err := dp.Apply([]service.Service{svc}); err != nil {
		b.Fatal(err)
	}
	hub, err := New(dp, "bench", slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go hub.Run(ctx)
	sport := uint16(40000)
	for _, size := range []struct {
		name    string
		payload int
		whole   bool
	}{{"headers", 1446, false}, {"whole-1500", 1446, true}} {
		for _, rate := range []int{50_000, 100_000, 200_000, 400_000, 800_000} {
			b.Run(fmt.Sprintf("%s/%dkpps", size.name, rate/1000), func(b *testing.B) {
				for range b.N {
					// A new flow: one an earlier capture sampled is not in
					// this one (capture epochs).
					sport++
					frame := tcpFrame(b, vip, sport, size.payload)
					offered, dropped := drainAt(b, hub, dp, frame, rate, size.whole)
					b.ReportMetric(float64(offered), "pkts/s")
					b.ReportMetric(100*float64(dropped)/float64(max(offered, 1)), "%dropped")
				}
			})
		}
	}
}

// drainAt offers frame at rate packets a second for a second to a
// capture and returns the packets offered and dropped.
func drainAt(b *testing.B, hub *Hub, dp *datapath.Datapath, frame []byte, rate int, whole bool) (offered, dropped uint64) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan Result, 1)
	go func() {
		r, err := hub.Capture(ctx, Request{Service: "web", Share: service.MaxWeight, Duration: time.Minute, Payload: whole}, io.Discard)
		if err != nil {
			b.Error(err)
		}
		res <- r
	}()
	time.Sleep(50 * time.Millisecond) // the capture registered
	prog := dp.Objects().TcClient
	const tick = 10 * time.Millisecond
	batch := rate / int(time.Second/tick)
	start := time.Now()
	// One run a call: a repeated run would see the frame its first run
	// rewrote (the DNAT), no longer the service's.
	opts := &ebpf.RunOptions{Data: frame, Repeat: 1}
	for i := 1; i <= int(time.Second/tick); i++ {
		for range batch {
			if _, err := prog.Run(opts); err != nil {
				b.Fatal(err)
			}
		}
		offered += uint64(batch)
		time.Sleep(time.Until(start.Add(time.Duration(i) * tick)))
	}
	elapsed := time.Since(start)
	cancel()
	r := <-res
	if r.Seen < offered-1 || r.Written+r.Dropped != r.Seen {
		b.Errorf("offered %d, the capture saw %d (written %d, dropped %d)", offered, r.Seen, r.Written, r.Dropped)
	}
	return uint64(float64(offered) / elapsed.Seconds()), r.Dropped
}

// tcpFrame is an ACK with payload bytes from a client's port sport to
// vip:80.
func tcpFrame(b *testing.B, vip netip.Addr, sport uint16, payload int) []byte {
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: []byte{198, 18, 0, 2}, DstIP: vip.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: 80, ACK: true, Seq: 1, Window: 512}
	tcp.SetNetworkLayerForChecksum(ip)
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(make([]byte, payload)))
	if err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkRecordPath is the agent's share of a captured packet, without
// the kernel: a raw ring record (headers only: 256 bytes; whole: 1500) is
// dispatched to a capture, put in time order and written as pcapng to
// io.Discard, all on one goroutine. 1e9 / ns/op is the record rate one
// core of this machine drains: above it a capture drops.
//
//	go test -run XXX -bench RecordPath ./agent/captures
func BenchmarkRecordPath(b *testing.B) {
	clock, err := capture.NewClock()
	if err != nil {
		b.Fatal(err)
	}
	for _, size := range []struct {
		name    string
		snap    int
		payload bool
	}{{"headers", 256, false}, {"whole-1500", 1500, true}} {
		b.Run(size.name, func(b *testing.B) {
			h := &Hub{clock: clock, node: "bench", sessions: map[*session]struct{}{}}
			s := &session{Request: Request{Service: "web", Payload: size.payload}, svcID: 1, share: service.MaxWeight, queue: make(chan record, 1)}
			h.sessions[s] = struct{}{}
			cw, err := capture.NewWriter(io.Discard, []capture.Interface{{Node: "bench", Name: "web"}})
			if err != nil {
				b.Fatal(err)
			}
			raw := make([]byte, hdrSize+size.snap)
			frame := tcpFrame(b, netip.MustParseAddr("198.18.100.1"), 40000, 1446)
			copy(raw[hdrSize:], frame)
			le := binary.LittleEndian
			le.PutUint32(raw[8:], 1)
			le.PutUint32(raw[12:], uint32(len(frame)))
			le.PutUint16(raw[20:], uint16(size.snap))
			b.SetBytes(int64(size.snap))
			b.ReportAllocs()
			ts := uint64(time.Now().UnixNano())
			for i := range b.N {
				le.PutUint64(raw[0:], ts+uint64(i)*1000)
				h.dispatch(raw)
				rec := <-s.queue
				s.queuedBytes.Add(-int64(len(rec.data)))
				s.order.add(rec)
				if err := h.emit(s, cw, s.order.take(false)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(1e9/(float64(b.Elapsed().Nanoseconds())/float64(b.N))/1000, "krecords/s")
		})
	}
}
