package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkTrackingCost compares, in one run, the per-packet cost of the
// established-flow paths with request tracking (latency histograms, error
// signals) on and off: a bare ACK, a client segment that starts a request,
// and the backend's first response segment. Method as BenchmarkPerPacket.
//
//	go test -run XXX -bench TrackingCost -benchtime 20000x ./pkg/datapath
func BenchmarkTrackingCost(b *testing.B) {
	f := newFixture(b)
	s := oneBackendWeb()
	s.App, s.LatencyThresholds = service.AppHTTP, []time.Duration{100 * time.Millisecond, 800 * time.Millisecond}
	off := comparedDatapath(b, f, Options{NoTracking: true}, s)
	client := netip.AddrPortFrom(client4, 2000)
	vip := netip.AddrPortFrom(vip4, 80)
	backend := s.Stable[0].Addr
	payload := make([]byte, 64)
	syn := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: 999})
	synack := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpSYN | tcpACK, seq: backendISN, ack: 1000})
	ack := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: 1000, ack: backendISN + 1})
	request := func(i int) []byte {
		return buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK | tcpPSH, seq: 1000 + uint32(i)*64, payload: payload})
	}
	response := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpACK | tcpPSH, payload: []byte("HTTP/1.1 200 OK\r\n\r\n")})

	type variant struct {
		name           string
		objs           *bpf.SteerObjects
		ack, req, resp []time.Duration
	}
	variants := []*variant{{name: "on", objs: f.dp.Objects()}, {name: "off", objs: off.Objects()}}
	err := f.inNS(func() error {
		for _, v := range variants {
			if err := runFrames([]*ebpf.Program{v.objs.XdpClient, v.objs.XdpBackend, v.objs.XdpClient}, [][]byte{syn, synack, ack}); err != nil {
				return err
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, v := range variants {
				for _, c := range []struct {
					p     *ebpf.Program
					frame []byte
					out   *[]time.Duration
				}{{v.objs.XdpClient, ack, &v.ack}, {v.objs.XdpClient, request(i), &v.req}, {v.objs.XdpBackend, response, &v.resp}} {
					_, d, err := c.p.Benchmark(c.frame, 1, nil)
					if err != nil {
						return err
					}
					*c.out = append(*c.out, d)
				}
			}
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Every request was timed with tracking on.
	lat, err := f.dp.View().PoolLatency(0)
	if err != nil {
		b.Fatal(err)
	}
	if got := lat[service.Stable].Response.Count(); got < uint64(b.N) {
		b.Fatalf("%d responses timed over %d rounds", got, b.N)
	}
	on, offv := variants[0], variants[1]
	for _, m := range []struct {
		name    string
		on, off []time.Duration
	}{{"ack", on.ack, offv.ack}, {"request", on.req, offv.req}, {"response", on.resp, offv.resp}} {
		a, z := median(m.on), median(m.off)
		b.ReportMetric(float64(a.Nanoseconds()), m.name+"-on-ns")
		b.ReportMetric(float64(z.Nanoseconds()), m.name+"-off-ns")
		b.ReportMetric(float64(a)/float64(z), m.name+"-on/off")
	}
}

// BenchmarkTCChecksum compares, in one run, the tc programs' established
// paths (a client's data segment, the backend's reply) when they fix the
// L4 checksum themselves (own: they read the skb's checksum state) and
// when the kernel's helpers do (helpers: as where they cannot read it).
// A test run's skb is CHECKSUM_NONE. Method as BenchmarkPerPacket.
//
//	go test -run XXX -bench TCChecksum -benchtime 20000x ./pkg/datapath
func BenchmarkTCChecksum(b *testing.B) {
	f := newFixture(b)
	if _, canRead, why := findIPSummed(mustKernelBTF(b)); !canRead {
		b.Skipf("the tc programs cannot read the checksum state here: %s", why)
	}
	s := oneBackendWeb()
	helpers := comparedDatapath(b, f, Options{ChecksumHelpers: true}, s)
	client := netip.AddrPortFrom(client4, 2100)
	vip := netip.AddrPortFrom(vip4, 80)
	backend := s.Stable[0].Addr
	syn := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpSYN, seq: 999})
	synack := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpSYN | tcpACK, seq: backendISN, ack: 1000})
	confirm := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: 1000, ack: backendISN + 1})
	data := buildPacket(pktSpec{src: client, dst: vip, proto: protoTCP, tcpFlags: tcpACK, seq: 1000, payload: make([]byte, 64)})
	reply := buildPacket(pktSpec{src: backend, dst: client, proto: protoTCP, tcpFlags: tcpACK, payload: make([]byte, 64)})

	type variant struct {
		name        string
		dp          *Datapath
		data, reply []time.Duration
	}
	variants := []*variant{{name: "own", dp: f.dp}, {name: "helpers", dp: helpers}}
	before := map[string]map[string]uint64{}
	err := f.inNS(func() error {
		for _, v := range variants {
			if err := handshakeTC(v.dp, syn, synack, confirm); err != nil {
				return err
			}
			st, err := v.dp.Stats()
			if err != nil {
				return err
			}
			before[v.name] = st
		}
		b.ResetTimer()
		for range b.N {
			for _, v := range variants {
				objs := v.dp.Objects()
				_, d, err := objs.TcClient.Benchmark(data, 1, nil)
				if err != nil {
					return err
				}
				v.data = append(v.data, d)
				if _, d, err = objs.TcBackend.Benchmark(reply, 1, nil); err != nil {
					return err
				}
				v.reply = append(v.reply, d)
			}
		}
		b.StopTimer()
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	// Every run took the forwarding path, through the helpers or not.
	for _, v := range variants {
		after, err := v.dp.Stats()
		if err != nil {
			b.Fatal(err)
		}
		want := uint64(0)
		if v.dp == helpers {
			want = 2 * uint64(b.N)
		}
		hits, replies := after["flow_hit"]-before[v.name]["flow_hit"], after["reply_hit"]-before[v.name]["reply_hit"]
		if got := after["csum_helper"] - before[v.name]["csum_helper"]; got != want || hits != uint64(b.N) || replies != uint64(b.N) {
			b.Fatalf("%s: csum_helper +%d (want %d), flow_hit +%d, reply_hit +%d over %d rounds", v.name, got, want, hits, replies, b.N)
		}
	}
	own, hv := variants[0], variants[1]
	for _, m := range []struct {
		name      string
		own, help []time.Duration
	}{{"data", own.data, hv.data}, {"reply", own.reply, hv.reply}} {
		b.ReportMetric(interquartileMean(m.own), m.name+"-own-ns")
		b.ReportMetric(interquartileMean(m.help), m.name+"-helpers-ns")
		b.ReportMetric(interquartileMean(m.own)/interquartileMean(m.help), m.name+"-own/helpers")
	}
}

// comparedDatapath loads a second data path, as opts say otherwise like the
// fixture's (its flow table 1<<16 unless opts size it), for a comparison in
// one run, and installs services in both.
func comparedDatapath(b *testing.B, f *fixture, opts Options, services ...service.Service) *Datapath {
	if opts.FlowTable == 0 {
		opts.FlowTable = 1 << 16
	}
	opts.MaxServices = 64
	dp, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { dp.Close() })
	for _, d := range []*Datapath{f.dp, dp} {
		if err := d.Apply(services); err != nil {
			b.Fatal(err)
		}
	}
	return dp
}

// runFrames runs each program once on its frame, in order: a handshake
// that sets a benchmark's flow up.
func runFrames(progs []*ebpf.Program, frames [][]byte) error {
	for i, p := range progs {
		if _, _, err := p.Benchmark(frames[i], 1, nil); err != nil {
			return err
		}
	}
	return nil
}

// handshakeTC runs a handshake's three frames through dp's tc programs.
func handshakeTC(dp *Datapath, syn, synack, ack []byte) error {
	o := dp.Objects()
	return runFrames([]*ebpf.Program{o.TcClient, o.TcBackend, o.TcClient}, [][]byte{syn, synack, ack})
}
