package agent_test

import (
	"bufio"
	"errors"
	"io"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// analyser is tshark reading the analyser namespace's eth0: what a SPAN
// port's analyser would see of the gateway's mirror0.
type analyser struct {
	path string
	cmd  interface{ Signal(os.Signal) error }
	done <-chan error
}

// startAnalyser starts dumpcap (Wireshark's capture engine, of the tshark
// package) on the analyser's eth0, TCP only (the veth's own IPv6 chatter
// stays out), and waits until it captures: until a connection to probe,
// to a service mirrored whole (probe makes one) shows in its count.
func startAnalyser(t *testing.T, e *env, probe func() error) *analyser {
	t.Helper()
	testenv.RequireTool(t, "dumpcap", "tshark")
	path := filepath.Join(t.TempDir(), "mirror.pcapng")
	cmd := e.lab.Analyser.Command(e.ctx, "dumpcap", "-n", "-B", "64", "-i", netlab.HostIf, "-f", "tcp", "-w", path)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	done, err := netlab.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	counting := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Split(bufio.ScanWords)
		var last []string
		once := false
		for sc.Scan() {
			// Progress: "Packets: N" every second or so.
			if len(last) > 0 && last[len(last)-1] == "Packets:" && sc.Text() != "0" && !once {
				close(counting)
				once = true
			}
			last = append(last[max(0, len(last)-32):], sc.Text())
		}
		t.Logf("dumpcap: %s", strings.Join(last, " "))
	}()
	deadline := time.After(30 * time.Second)
	for {
		if err := probe(); err != nil {
			t.Fatalf("probe connection: %v", err)
		}
		select {
		case <-counting:
			a := &analyser{path: path, cmd: cmd.Process, done: done}
			t.Cleanup(func() { a.cmd.Signal(syscall.SIGKILL) })
			return a
		case err := <-done:
			t.Fatalf("dumpcap exited before capturing: %v", err)
		case <-deadline:
			cmd.Process.Kill()
			t.Fatal("dumpcap captured nothing in 30s")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// stop ends the capture and returns its packets.
func (a *analyser) stop(t *testing.T) []gopacket.Packet {
	t.Helper()
	time.Sleep(500 * time.Millisecond) // the last copies reach the socket
	a.cmd.Signal(syscall.SIGINT)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		t.Fatal("tshark did not stop")
	}
	return readPcapng(t, a.path)
}

func readPcapng(t *testing.T, path string) []gopacket.Packet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var out []gopacket.Packet
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		p.Metadata().CaptureInfo = ci
		out = append(out, p)
	}
}

// conn is one TCP connection as a capture shows it, from the client's SYN.
type conn struct {
	client                       netip.AddrPort
	syn, synAck, data, fin, rfin bool // client SYN, VIP SYN-ACK, VIP data, client FIN, VIP FIN
	packets                      int
}

// tcpView is a packet's TCP header and the client end of its flow with the
// VIP (false if it is not client <-> vip).
func tcpView(p gopacket.Packet, vip netip.Addr) (*layers.TCP, netip.AddrPort, bool, bool) {
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	nl := p.NetworkLayer()
	if tcp == nil || nl == nil {
		return nil, netip.AddrPort{}, false, false
	}
	src, _ := netip.AddrFromSlice(nl.NetworkFlow().Src().Raw())
	dst, _ := netip.AddrFromSlice(nl.NetworkFlow().Dst().Raw())
	switch {
	case dst == vip:
		return tcp, netip.AddrPortFrom(src, uint16(tcp.SrcPort)), true, true
	case src == vip:
		return tcp, netip.AddrPortFrom(dst, uint16(tcp.DstPort)), false, true
	}
	return tcp, netip.AddrPort{}, false, false
}

// connections groups the packets of vip:port into connections; any packet
// not between a client and the VIP, or of a connection whose SYN is
// missing, is returned in stray.
func connections(pkts []gopacket.Packet, vip netip.Addr, port uint16) (conns []*conn, stray []string) {
	open := map[netip.AddrPort]*conn{}
	for _, p := range pkts {
		tcp, client, toVIP, ok := tcpView(p, vip)
		if !ok {
			stray = append(stray, "not client <-> VIP: "+p.String()[:min(200, len(p.String()))])
			continue
		}
		if (toVIP && uint16(tcp.DstPort) != port) || (!toVIP && uint16(tcp.SrcPort) != port) {
			continue
		}
		c := open[client]
		if toVIP && tcp.SYN && !tcp.ACK {
			if c == nil || c.packets > 1 || !c.syn { // a new connection (a retransmitted SYN stays)
				c = &conn{client: client}
				open[client] = c
				conns = append(conns, c)
			}
			c.syn = true
		}
		if c == nil {
			stray = append(stray, "before its SYN: "+client.String())
			continue
		}
		c.packets++
		switch {
		case !toVIP && tcp.SYN && tcp.ACK:
			c.synAck = true
		case !toVIP && len(tcp.Payload) > 0:
			c.data = true
		}
		if tcp.FIN && toVIP {
			c.fin = true
		}
		if tcp.FIN && !toVIP {
			c.rfin = true
		}
	}
	return conns, stray
}

// TestMirrorToInterface mirrors 10 % of 20 000 new TCP connections (a 50 %
// canary weight) to mirror0, whose peer an analyser in its own namespace
// reads with tshark: the mirrored share is 10 % within 4σ; every mirrored
// connection is there whole, both ways (SYN, SYN-ACK, data, both FINs),
// as the client saw it (client <-> VIP); no packet of another connection
// is; the kernel's copy counter equals what the analyser got. A bulk
// connection sent with TSO arrives as valid frames: every copy's IP length
// matches the frame, nothing of the byte stream is missing, and the GSO
// copies longer than the MTU are counted.
//
// At an XDP hook (generic XDP here) the mirrored flows are handed to the
// tc program beside it, which copies them: the same holds.
func TestMirrorToInterface(t *testing.T) {
	for _, mode := range []string{"tc", "generic"} {
		t.Run(mode, func(t *testing.T) { testMirrorToInterface(t, mode) })
	}
}

func testMirrorToInterface(t *testing.T, mode string) {
	e := setup(t, netlab.Config{Analyser: true}, mode)
	webSvc := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 5000)
	webSvc.Mirror = &service.Mirror{Percent: 1000, To: netlab.MirrorIf}
	bulk := web("bulk", e.lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 0)
	bulk.Mirror = &service.Mirror{Percent: service.MaxWeight, To: netlab.MirrorIf}
	if err := e.agent.Apply(e.ctx, []service.Service{webSvc, bulk}); err != nil {
		t.Fatal(err)
	}
	// Small echoes of the bulk service (mirrored whole) show when the
	// analyser captures; they are of the bulk connection's checks too.
	an := startAnalyser(t, e, func() error {
		_, err := echoBulk(e, netip.AddrPortFrom(netlab.VIP4, 81), 1)
		return err
	})
	const n = 20000
	res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), nil, n, 32)
	if err != nil || res.OK != n {
		t.Fatalf("connections: %v (%v)", res, err)
	}
	const bulkBytes = 4 << 20
	echoed, err := echoBulk(e, netip.AddrPortFrom(netlab.VIP4, 81), bulkBytes)
	if err != nil {
		t.Fatal(err)
	}
	pkts := an.stop(t)

	var webPkts, bulkPkts []gopacket.Packet
	for _, p := range pkts {
		tcp, _, toVIP, ok := tcpView(p, netlab.VIP4)
		port := tcp.SrcPort
		if ok && toVIP {
			port = tcp.DstPort
		}
		switch {
		case ok && port == 81:
			bulkPkts = append(bulkPkts, p)
		default:
			webPkts = append(webPkts, p)
		}
	}
	conns, stray := connections(webPkts, netlab.VIP4, 80)
	if len(stray) > 0 {
		t.Errorf("%d packets are not of a whole mirrored connection, e.g. %v", len(stray), stray[:min(3, len(stray))])
	}
	whole := 0
	for _, c := range conns {
		if c.syn && c.synAck && c.data && c.fin && c.rfin {
			whole++
		} else if whole < 5 {
			t.Errorf("connection of %s is not whole in the mirror: %+v", c.client, *c)
		}
	}
	p, sigma := 0.10, math.Sqrt(n*0.10*0.90)
	if d := math.Abs(float64(len(conns)) - p*n); d > 4*sigma {
		t.Errorf("%d of %d connections mirrored, want %.0f ± %.0f (4σ)", len(conns), n, p*n, 4*sigma)
	}
	t.Logf("mirrored %d of %d connections (%d whole), %d packets; bulk: %d frames", len(conns), n, whole, len(webPkts), len(bulkPkts))

	st := e.mirrorStats(t, webSvc)
	if st.Copies != uint64(len(webPkts)) || st.CopyFailed != 0 {
		t.Errorf("kernel copies %d (failed %d), the analyser got %d", st.Copies, st.CopyFailed, len(webPkts))
	}
	checkBulkCopies(t, bulkPkts, echoed, e.mirrorStats(t, bulk))
	if mode != "tc" {
		v, err := e.agent.View()
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		stats, err := v.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if stats["mirror_handoff"] == 0 || stats["mirror_xdp"] != 0 {
			t.Errorf("XDP handed %d packets to tc and left %d uncopied", stats["mirror_handoff"], stats["mirror_xdp"])
		}
		t.Logf("XDP handed %d packets of mirrored flows to tc", stats["mirror_handoff"])
	}
}

// echoBulk sends n bytes to the echo service at vip and reads them back:
// the client's TSO and the veths' GRO make multi-segment packets.
func echoBulk(e *env, vip netip.AddrPort, n int) (int, error) {
	c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, vip)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 64<<10)
	go func() {
		for sent := 0; sent < n; sent += len(buf) {
			if _, err := c.Write(buf[:min(len(buf), n-sent)]); err != nil {
				return
			}
		}
		c.CloseWrite()
	}()
	got, err := io.Copy(io.Discard, c)
	return int(got), err
}

// checkBulkCopies checks the bulk connection's copies: consistent frames
// (IP length = frame length), the whole byte stream both ways, and as many
// copies longer than the MTU as the kernel counted GSO copies.
func checkBulkCopies(t *testing.T, pkts []gopacket.Packet, echoed int, st datapath.MirrorStats) {
	t.Helper()
	var up, down, oversize int
	for _, p := range pkts {
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Fatalf("a bulk copy is not IPv4/TCP: %v", p)
		}
		if int(ip.Length)+14 != len(p.Data()) {
			t.Errorf("a bulk copy of %d bytes says IP length %d", len(p.Data()), ip.Length)
		}
		if len(p.Data()) > 1514 {
			oversize++
		}
		if tcp.DstPort == 81 {
			up += len(tcp.Payload)
		} else {
			down += len(tcp.Payload)
		}
	}
	// The stream from the VIP starts with the backend's name line.
	if up < echoed || down < echoed {
		t.Errorf("bulk copies carry %d bytes up and %d down, the connection %d each way", up, down, echoed)
	}
	if uint64(oversize) != st.CopyGSO {
		t.Errorf("%d copies longer than the MTU, the kernel counted %d GSO copies", oversize, st.CopyGSO)
	}
	t.Logf("bulk: %d copies, %d longer than the MTU (GSO), %d bytes up, %d down", len(pkts), oversize, up, down)
}

// mirrorStats reads a service's mirror counters (both pools) from the
// agent's pinned maps.
func (e *env) mirrorStats(t *testing.T, s service.Service) datapath.MirrorStats {
	t.Helper()
	ks, v := e.kernelService(t, s)
	defer v.Close()
	ms, err := v.MirrorStats(ks.ID)
	if err != nil {
		t.Fatal(err)
	}
	sum := ms[0]
	sum.Copies += ms[1].Copies
	sum.CopyBytes += ms[1].CopyBytes
	sum.CopyFailed += ms[1].CopyFailed
	sum.CopyGSO += ms[1].CopyGSO
	sum.Captured += ms[1].Captured
	sum.CapturedBytes += ms[1].CapturedBytes
	sum.CaptureDropped += ms[1].CaptureDropped
	return sum
}
