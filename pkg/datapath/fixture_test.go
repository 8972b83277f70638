package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/service"
)

// Addresses of the packet tests. Backends and clients have static
// neighbour entries so bpf_fib_lookup succeeds; noNeigh has none.
var (
	vip4     = netip.MustParseAddr("198.18.100.10")
	vip6     = netip.MustParseAddr("fd00:6c61:100::10")
	client4  = netip.MustParseAddr("198.18.0.2")
	client6  = netip.MustParseAddr("fd00:6c61:0:1::2")
	stable4  = []netip.Addr{netip.MustParseAddr("198.18.1.10"), netip.MustParseAddr("198.18.1.11")}
	canary4  = []netip.Addr{netip.MustParseAddr("198.18.1.100")}
	stable6  = []netip.Addr{netip.MustParseAddr("fd00:6c61:0:2::a"), netip.MustParseAddr("fd00:6c61:0:2::b")}
	canary6  = []netip.Addr{netip.MustParseAddr("fd00:6c61:0:2::64")}
	noNeigh4 = netip.MustParseAddr("198.18.1.200")

	macBackend = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x01}
)

// fixture is a network namespace of the test's own, with two dummy
// interfaces (client side cli0, backend side bck0, each a veth whose peer
// is left dangling), routes and neighbours,
// and a loaded (not attached) data path. The test goroutine stays locked
// to a thread inside the namespace: BPF_PROG_TEST_RUN routes in the
// caller's namespace.
type fixture struct {
	dp           *Datapath
	cliIf, bckIf int
	cliMAC       net.HardwareAddr
	bckMAC       net.HardwareAddr
	skbIfOffs    []int   // offsets of ingress_ifindex and ifindex in struct __sk_buff
	skbDataOffs  []int16 // offsets of data and data_end in struct __sk_buff
	skbCtxSize   int
	ns           netns.NsHandle
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	testenv.RequirePrivileges(t)
	f := &fixture{}
	// Create the namespace on a locked thread and come straight back: every
	// later step that must happen inside it goes through f.inNS, so
	// subtests (which run on other goroutines) work too.
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	f.ns, err = netns.New()
	if err == nil {
		err = netns.Set(orig)
	}
	if err != nil {
		t.Fatal(err) // leaves the thread locked: it dies with the goroutine
	}
	runtime.UnlockOSThread()
	orig.Close()
	t.Cleanup(func() { f.ns.Close() })
	if err := f.inNS(func() error { return f.setup(t) }); err != nil {
		t.Fatal(err)
	}
	return f
}

// inNS runs fn on a thread switched into the fixture's namespace.
func (f *fixture) inNS(fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(f.ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		return err // the thread stays locked and dies with its goroutine
	}
	runtime.UnlockOSThread()
	return ferr
}

// setup, run inside the fixture's namespace, adds its links, turns
// forwarding on, adds the neighbours and loads the data path.
func (f *fixture) setup(t testing.TB) error {
	f.cliIf, f.cliMAC = addVeth(t, "cli0", "198.18.0.1/24", "fd00:6c61:0:1::1/64")
	f.bckIf, f.bckMAC = addVeth(t, "bck0", "198.18.1.1/24", "fd00:6c61:0:2::1/64")
	for _, kv := range [][2]string{{"/proc/sys/net/ipv4/ip_forward", "1"}, {"/proc/sys/net/ipv6/conf/all/forwarding", "1"}} {
		if err := os.WriteFile(kv[0], []byte(kv[1]), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, set := range [][]netip.Addr{stable4, canary4, stable6, canary6} {
		for _, a := range set {
			addNeigh(t, f.bckIf, a, macBackend)
		}
	}
	addNeigh(t, f.cliIf, client4, macClient)
	addNeigh(t, f.cliIf, client6, macClient)

	dp, err := New(Options{FlowTable: 1 << 18, MaxServices: 64})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	f.dp = dp
	f.readSkbLayout(t)
	return nil
}

// addVeth adds a veth pair whose peer stays in the namespace (the kernel
// may have no dummy driver, and veth has carrier once both ends are up),
// gives the end called name addrs, brings both up and returns that end's
// index and MAC.
func addVeth(t testing.TB, name string, addrs ...string) (int, net.HardwareAddr) {
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("add %s: %v", name, err)
	}
	peer, err := netlink.LinkByName(name + "p")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		addr, _ := netlink.ParseAddr(a)
		addr.Flags = 0x80 // IFA_F_NODAD
		if err := netlink.AddrAdd(l, addr); err != nil {
			t.Fatalf("addr %s on %s: %v", a, name, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index, l.Attrs().HardwareAddr
}

// addNeigh adds a permanent neighbour entry for ip on ifindex.
func addNeigh(t testing.TB, ifindex int, ip netip.Addr, mac net.HardwareAddr) {
	n := &netlink.Neigh{LinkIndex: ifindex, IP: ip.AsSlice(), HardwareAddr: mac, State: netlink.NUD_PERMANENT}
	if ip.Is4() {
		n.Family = netlink.FAMILY_V4
	} else {
		n.Family = netlink.FAMILY_V6
	}
	if err := netlink.NeighAdd(n); err != nil {
		t.Fatalf("neighbour %s: %v", ip, err)
	}
}

// readSkbLayout reads from the programs' BTF where the test runs find
// the fields of struct __sk_buff they fill in or read, and its size.
func (f *fixture) readSkbLayout(t testing.TB) {
	var sk *btf.Struct
	if err := dpSpecTypes(t).TypeByName("__sk_buff", &sk); err != nil {
		t.Fatal(err)
	}
	f.skbCtxSize = int(sk.Size)
	for _, m := range sk.Members {
		switch m.Name {
		case "ingress_ifindex", "ifindex":
			f.skbIfOffs = append(f.skbIfOffs, int(m.Offset.Bytes()))
		case "data", "data_end":
			f.skbDataOffs = append(f.skbDataOffs, int16(m.Offset.Bytes()))
		}
	}
	if len(f.skbIfOffs) != 2 || len(f.skbDataOffs) != 2 {
		t.Fatal("struct __sk_buff lacks ingress_ifindex, ifindex, data or data_end in the programs' BTF")
	}
}

func dpSpecTypes(t testing.TB) *btf.Spec {
	spec, err := bpf.LoadSteer()
	if err != nil {
		t.Fatal(err)
	}
	return spec.Types
}

// hook says which program family a test runs.
type hook int

const (
	hookXDP hook = iota
	hookTC
)

func (h hook) String() string { return [...]string{"xdp", "tc"}[h] }

// Verdicts, normalised over XDP and TC.
type verdict int

const (
	vPass verdict = iota
	vDrop
	vRedirect
)

func (v verdict) String() string { return [...]string{"pass", "drop", "redirect"}[v] }

const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpRedirect = 4
	tcUnspec    = 0xffffffff // TC_ACT_UNSPEC (-1)
	tcShot      = 2
	tcRedirect  = 7
)

// run feeds one frame to a program (client or backend side) as if it came
// in on ifindex, and returns the normalised verdict and the frame after.
func (f *fixture) run(t testing.TB, h hook, backendSide bool, ifindex int, frame []byte) (verdict, []byte) {
	t.Helper()
	var v verdict
	var out []byte
	err := f.inNS(func() (err error) {
		v, out, err = f.tryRun(h, backendSide, ifindex, frame)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return v, out
}

func (f *fixture) tryRun(h hook, backendSide bool, ifindex int, frame []byte) (verdict, []byte, error) {
	objs := f.dp.Objects()
	out := make([]byte, len(frame)+256)
	opts := &ebpf.RunOptions{Data: frame, DataOut: out, Repeat: 1}
	var prog *ebpf.Program
	if h == hookXDP {
		prog = objs.XdpClient
		if backendSide {
			prog = objs.XdpBackend
		}
		opts.Context = bpf.SteerXdpMd{DataEnd: uint32(len(frame)), IngressIfindex: uint32(ifindex)}
	} else {
		prog = objs.TcClient
		if backendSide {
			prog = objs.TcBackend
		}
		ctx := make([]byte, f.skbCtxSize)
		for _, off := range f.skbIfOffs { // the device the packet came in on
			putNative32(ctx[off:], uint32(ifindex))
		}
		opts.Context = ctx
	}
	ret, err := prog.Run(opts)
	if err != nil {
		return 0, nil, err
	}
	out = opts.DataOut
	switch {
	case h == hookXDP && ret == xdpPass, h == hookTC && ret == tcUnspec:
		return vPass, out, nil
	case h == hookXDP && ret == xdpDrop, h == hookTC && ret == tcShot:
		return vDrop, out, nil
	case h == hookXDP && ret == xdpRedirect, h == hookTC && ret == tcRedirect:
		return vRedirect, out, nil
	}
	return 0, out, fmt.Errorf("undocumented verdict %d from %s", int32(ret), h)
}

func putNative32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// oneBackendWeb is webService web (TCP, vip4:80, weight 0) with a single
// stable backend and no canary: every flow goes to s.Stable[0].
func oneBackendWeb() service.Service {
	s := webService("web", vip4, service.TCP, 0)
	s.Canary, s.Stable = nil, s.Stable[:1]
	return s
}

// timedDNSService is the timeout tests' service: dns, UDP port 53 at
// vip4, stable backends only, answered within timeout.
func timedDNSService(timeout time.Duration) service.Service {
	s := webService("dns", vip4, service.UDP, 0)
	s.Port, s.Canary, s.Timeout = 53, nil, timeout
	return s
}

// askDNS sends one request of client4's port to timedDNSService through
// the XDP client program and returns the backend it was steered to.
func (f *fixture) askDNS(t *testing.T, port uint16) netip.AddrPort {
	t.Helper()
	src := netip.AddrPortFrom(client4, port)
	_, out := f.run(t, hookXDP, false, f.cliIf, buildPacket(pktSpec{src: src, dst: netip.AddrPortFrom(vip4, 53), proto: protoUDP, payload: []byte("q")}))
	d, err := decode(out)
	if err != nil {
		t.Fatal(err)
	}
	return d.dst
}

// webFlowKey is the flow-table key of a TCP flow from client to vip4:80
// (a service keyed by the 5-tuple), as the programs write it.
func webFlowKey(client netip.AddrPort) bpf.SteerFlowKey {
	return bpf.SteerFlowKey{Src: addr16(client.Addr()), Dst: addr16(vip4), Sport: htons(client.Port()), Dport: htons(80), Proto: uint8(service.TCP)}
}

// webService is a service on vip:80/tcp with the test's backends.
func webService(name string, vip netip.Addr, proto service.Protocol, weight service.Weight) service.Service {
	stable, canary := stable4, canary4
	if vip.Is6() {
		stable, canary = stable6, canary6
	}
	s := service.Service{Name: name, VIP: vip, Port: 80, Protocol: proto, Key: service.KeyFlow, CanaryWeight: weight}
	for _, a := range stable {
		s.Stable = append(s.Stable, service.Backend{Addr: netip.AddrPortFrom(a, 8080)})
	}
	for _, a := range canary {
		s.Canary = append(s.Canary, service.Backend{Addr: netip.AddrPortFrom(a, 8080)})
	}
	return s
}
