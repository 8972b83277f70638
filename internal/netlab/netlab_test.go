package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// labNamespaces lists /run/netns entries of lab (or of every lab with the
// prefix if lab is a bare prefix).
func labNamespaces(t *testing.T, lab string) []string {
	t.Helper()
	entries, err := os.ReadDir(NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), lab+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// prefixNamespaces lists /run/netns entries of every lab with the prefix.
func prefixNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	entries, err := os.ReadDir(NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if stalePattern(prefix).MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// nsInode returns the inode identifying the namespace pinned at name.
func nsInode(t *testing.T, name string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(NetnsDir, name), &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// assertNoNSRefs checks that no thread of this process is in, and no open
// fd refers to, one of the namespaces: Do and the load workers must not leak
// threads into the lab, and Close must release its handles. Thread exit is
// asynchronous, so it polls briefly.
func assertNoNSRefs(t *testing.T, inodes map[uint64]string) {
	t.Helper()
	var bad []string
	for range 100 {
		bad = bad[:0]
		for _, pattern := range []string{"/proc/self/task/*/ns/net", "/proc/self/fd/*"} {
			paths, _ := filepath.Glob(pattern)
			for _, p := range paths {
				target, err := os.Readlink(p)
				if err != nil {
					continue
				}
				var ino uint64
				if _, err := fmt.Sscanf(target, "net:[%d]", &ino); err == nil {
					if ns, ok := inodes[ino]; ok {
						bad = append(bad, p+" -> "+ns)
					}
				}
			}
		}
		if len(bad) == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("references to lab namespaces remain: %v", bad)
}

func labInodes(t *testing.T, l *Lab) map[uint64]string {
	inodes := map[uint64]string{}
	for _, h := range l.Hosts() {
		inodes[nsInode(t, h.NetNS)] = h.NetNS
	}
	return inodes
}

// rootLeaks reports any lab interface or address in the root namespace
// (where this test's unlocked goroutines run).
func rootLeaks(t *testing.T, lab string) []string {
	t.Helper()
	var out []string
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range links {
		if strings.Contains(link.Attrs().Name, lab) || slices.Contains([]string{GatewayClientIf, GatewayBackendIf, SwitchGatewayPort}, link.Attrs().Name) {
			out = append(out, "link "+link.Attrs().Name)
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		if LabNet4.Contains(ip) || LabNet6.Contains(ip) {
			out = append(out, "address "+ip.String())
		}
	}
	return out
}

func TestNewClose(t *testing.T) {
	l := NewT(t, Config{})
	if len(l.Stable) != 2 || len(l.Canary) != 1 {
		t.Fatalf("got %d stable, %d canary; want 2, 1", len(l.Stable), len(l.Canary))
	}
	want := []string{l.Name + "-c0", l.Name + "-cl", l.Name + "-gw", l.Name + "-s0", l.Name + "-s1", l.Name + "-sw"}
	if got := labNamespaces(t, l.Name); !slices.Equal(got, want) {
		t.Fatalf("namespaces = %v, want %v", got, want)
	}
	if leaks := rootLeaks(t, l.Name); len(leaks) > 0 {
		t.Errorf("root namespace has lab state: %v", leaks)
	}
	for _, c := range []struct {
		h          *Host
		key, value string
	}{
		{l.Gateway, "net.ipv4.ip_forward", "1"},
		{l.Gateway, "net.ipv6.conf.all.forwarding", "1"},
		{l.Gateway, "net.ipv6.conf.cli0.forwarding", "1"},
		{l.Gateway, "net.ipv4.conf.bck0.rp_filter", "0"},
		{l.Gateway, "net.ipv4.conf.all.rp_filter", "0"},
		{l.Client, "net.ipv4.ip_local_port_range", "1024\t65000"},
		{l.Client, "net.ipv4.tcp_tw_reuse", "1"},
		{l.Client, "net.ipv6.conf.eth0.accept_dad", "0"},
		{l.Stable[0], "net.ipv4.ip_forward", "0"},
	} {
		got, err := c.h.ReadSysctl(c.key)
		if err != nil || got != c.value {
			t.Errorf("%s: %s = %q, %v; want %q", c.h.Name, c.key, got, err, c.value)
		}
	}
	inodes := labInodes(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := labNamespaces(t, l.Name); len(got) > 0 {
		t.Fatalf("namespaces left after Close: %v", got)
	}
	assertNoNSRefs(t, inodes)
	if err := l.Client.SetLinkUp(context.Background(), HostIf, true); !errors.Is(err, ErrClosed) {
		t.Errorf("SetLinkUp after Close: %v, want ErrClosed", err)
	}
	if err := l.Client.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: %v, want ErrClosed", err)
	}
}

func deadPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if processAlive(pid) {
		t.Skipf("pid %d reused already", pid)
	}
	return pid
}

func TestCleanupStale(t *testing.T) {
	testenv.RequirePrivileges(t)
	const prefix = "glst"
	dead := fmt.Sprintf("%s%dx0", prefix, deadPid(t))
	mine := fmt.Sprintf("%s%dx99", prefix, os.Getpid())  // same pid, not live: a previous process
	alive := fmt.Sprintf("%s%dx0", prefix, os.Getppid()) // a running process
	other := fmt.Sprintf("glother%dx0", deadPid(t))      // another prefix
	for _, ns := range []string{dead + "-gw", dead + "-cl", mine + "-gw", alive + "-gw", other + "-gw"} {
		if err := createNetNS(ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { deleteNetNS(ns) })
	}
	// Give the stale lab an interface, like a real leftover.
	h := &Host{Name: "gw", NetNS: dead + "-gw", fd: -1}
	fd, err := unix.Open(filepath.Join(NetnsDir, h.NetNS), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.fd = fd
	if err := h.Do(func() error {
		return netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "v0"}, PeerName: "v1"})
	}); err != nil {
		t.Fatal(err)
	}
	h.close()

	stale, err := StaleNamespaces(prefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(stale)
	if want := []string{dead + "-cl", dead + "-gw", mine + "-gw"}; !slices.Equal(stale, want) {
		slices.Sort(want)
		if !slices.Equal(stale, want) {
			t.Fatalf("StaleNamespaces = %v, want %v", stale, want)
		}
	}

	l := NewT(t, Config{Prefix: prefix, Stable: 1, Canary: -1})
	for _, lab := range []string{dead, mine} {
		if got := labNamespaces(t, lab); len(got) > 0 {
			t.Errorf("stale namespaces survived New: %v", got)
		}
	}
	for _, lab := range []string{alive, other} {
		if got := labNamespaces(t, lab); len(got) != 1 {
			t.Errorf("namespace of %s was removed", lab)
		}
	}
	if got := labNamespaces(t, l.Name); len(got) != 4 {
		t.Errorf("lab namespaces = %v", got)
	}
	if err := CleanupStale(prefix); err != nil {
		t.Fatal(err)
	}
	if got := labNamespaces(t, l.Name); len(got) != 4 {
		t.Errorf("CleanupStale removed a live lab of this process: %v", got)
	}
}

func TestNewFailsCleanly(t *testing.T) {
	testenv.RequirePrivileges(t)
	const prefix = "glfail"
	for _, cfg := range []Config{
		{Prefix: prefix, ClientAliases: MaxClientAliases + 1},
		{Prefix: prefix, Stable: MaxStable + 1},
		{Prefix: prefix, Canary: MaxCanary + 1},
		{Prefix: "Bad-Prefix"},
	} {
		if l, err := New(context.Background(), cfg); err == nil {
			l.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	// Fail at every checkpoint of the build in turn, until New gets
	// through: nothing may be left behind.
	t.Cleanup(func() { testFailStep = nil })
	errInjected := errors.New("injected failure")
	for n := 1; ; n++ {
		testFailStep = func(step int) error {
			if step == n {
				return errInjected
			}
			return nil
		}
		if n == 30 {
			// Make sure the check below can see namespaces at all.
			testFailStep = func(step int) error {
				if step == n {
					if got := prefixNamespaces(t, prefix); len(got) == 0 {
						t.Error("prefixNamespaces sees no namespace during New")
					}
					return errInjected
				}
				return nil
			}
		}
		l, err := New(context.Background(), Config{Prefix: prefix, Stable: 1, Canary: 1, ClientAliases: 2, VethXDPReady: true})
		if got := prefixNamespaces(t, prefix); err != nil && len(got) > 0 {
			t.Fatalf("step %d: namespaces left after failed New (%v): %v", n, err, got)
		}
		if err == nil {
			l.Close()
			t.Logf("New succeeds past %d checkpoints", n-1)
			if n < 20 {
				t.Errorf("only %d checkpoints", n-1)
			}
			break
		}
		if !errors.Is(err, errInjected) || l != nil {
			t.Fatalf("step %d: New = %v, %v", n, l, err)
		}
	}
	testFailStep = nil
	// A cancelled ctx stops the build too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(ctx, Config{Prefix: prefix}); !errors.Is(err, context.Canceled) {
		t.Errorf("New with a cancelled ctx: %v", err)
	}
	if got := prefixNamespaces(t, prefix); len(got) > 0 {
		t.Fatalf("namespaces left after cancelled New: %v", got)
	}
}

func TestRouting(t *testing.T) {
	l := NewT(t, Config{Stable: 2, Canary: 1, ClientAliases: 3})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range l.Backends() {
		if _, err := b.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cl := l.Client
	for _, b := range l.Backends() {
		for _, c := range []struct{ raddr, laddr netip.Addr }{
			{b.Addr4, netip.Addr{}},
			{b.Addr6, netip.Addr{}},
			{b.Addr4, cl.Aliases4[2]},
			{b.Addr6, cl.Aliases6[1]},
		} {
			name, err := cl.Hello(ctx, netip.AddrPortFrom(c.raddr, HelloPort), c.laddr)
			if err != nil || name != b.Name {
				t.Errorf("TCP hello %v from %v: %q, %v; want %q", c.raddr, c.laddr, name, err, b.Name)
			}
			name, rest, err := cl.HelloUDP(ctx, netip.AddrPortFrom(c.raddr, UDPPort), c.laddr, []byte("ping"))
			if err != nil || name != b.Name || string(rest) != "ping" {
				t.Errorf("UDP %v from %v: %q %q, %v; want %q ping", c.raddr, c.laddr, name, rest, err, b.Name)
			}
			name, rest, err = cl.HelloUDP(ctx, netip.AddrPortFrom(c.raddr, GTPUPort), c.laddr, []byte{0x30, 0xff, 0, 4, 0, 0, 0, 1, 1, 2, 3, 4})
			if err != nil || name != b.Name || len(rest) != 0 {
				t.Errorf("GTP-U %v from %v: %q %q, %v; want %q", c.raddr, c.laddr, name, rest, err, b.Name)
			}
		}
		// Echo: a long-lived connection.
		c, err := cl.DialTCP(ctx, netip.Addr{}, netip.AddrPortFrom(b.Addr6, EchoPort))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if name, err := readLine(c); err != nil || name != b.Name {
			t.Errorf("echo greeting: %q, %v", name, err)
		}
		for _, msg := range []string{"hello\n", "again\n"} {
			c.Write([]byte(msg))
			if got, err := readLine(c); err != nil || got+"\n" != msg {
				t.Errorf("echo: %q, %v; want %q", got, err, msg)
			}
		}
		c.Close()
	}
	// Without Graylane a VIP is unroutable at the gateway: an ICMP error,
	// not a timeout.
	start := time.Now()
	if _, err := cl.Hello(ctx, netip.AddrPortFrom(VIP4, HelloPort), netip.Addr{}); err == nil {
		t.Error("hello to the VIP succeeded without Graylane")
	} else if errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Errorf("hello to the VIP: %v after %v; want a quick ICMP error", err, time.Since(start))
	} else {
		t.Logf("VIP without Graylane: %v", err)
	}
	inodes := labInodes(t, l)
	if err := l.Close(); err != nil { // also stops the servers
		t.Fatal(err)
	}
	assertNoNSRefs(t, inodes)
}

func TestHelloMany(t *testing.T) {
	l := NewT(t, Config{Stable: 1, Canary: 1, ClientAliases: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, b := range l.Backends() {
		stop, err := b.StartServers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	s0, c0 := l.Stable[0], l.Canary[0]
	res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, HelloPort), nil, 2000, 32)
	t.Logf("v4: %v", res)
	if err != nil || res.Failed != 0 || res.Counts[s0.Name] != 2000 || len(res.Counts) != 1 {
		t.Fatalf("HelloMany v4: %v, %v (errors %v)", res, err, res.Errors)
	}
	res, err = l.Client.HelloMany(ctx, netip.AddrPortFrom(c0.Addr6, HelloPort), l.Client.Addrs6(), 1000, 16)
	t.Logf("v6 from %d addresses: %v", len(l.Client.Addrs6()), res)
	if err != nil || res.Failed != 0 || res.Counts[c0.Name] != 1000 {
		t.Fatalf("HelloMany v6: %v, %v (errors %v)", res, err, res.Errors)
	}
	// The servers closed first: TIME_WAIT is on the backends, not the client.
	if n := timeWait(t, l.Client); n != 0 {
		t.Errorf("client has %d TIME_WAIT sockets, want 0", n)
	}
	if n := timeWait(t, s0); n < 1900 {
		t.Errorf("s0 has %d TIME_WAIT sockets, want ~2000", n)
	}
	// Failures are counted, not fatal: nobody listens on port 9.
	res, err = l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, 9), nil, 20, 4)
	if err != nil || res.Failed != 20 || res.OK != 0 || len(res.Errors) == 0 {
		t.Errorf("HelloMany to a closed port: %v, %v", res, err)
	}
	// ctx bounds the run.
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	res, err = l.Client.HelloMany(short, netip.AddrPortFrom(s0.Addr4, HelloPort), nil, MaxHelloConns, 8)
	if err == nil || res.OK >= MaxHelloConns {
		t.Errorf("HelloMany with a short ctx: %v, %v", res, err)
	}
	if _, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, HelloPort), nil, 10, MaxConcurrency+1); err == nil {
		t.Error("HelloMany accepted concurrency above the limit")
	}
	inodes := labInodes(t, l)
	l.Close()
	assertNoNSRefs(t, inodes)
}

// timeWait counts TIME_WAIT TCP sockets in h's namespace. /proc/self/net
// would show the main thread's namespace: a switched thread must use
// /proc/thread-self/net.
func timeWait(t *testing.T, h *Host) int {
	t.Helper()
	n := 0
	err := h.Do(func() error {
		for _, f := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			for line := range strings.Lines(string(b)) {
				if fields := strings.Fields(line); len(fields) > 3 && fields[3] == "06" {
					n++
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestSetLinkUp(t *testing.T) {
	l := NewT(t, Config{Stable: 1, Canary: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s0 := l.Stable[0]
	if _, err := s0.StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	hello := func(addr netip.Addr, timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		name, err := l.Client.Hello(ctx, netip.AddrPortFrom(addr, HelloPort), netip.Addr{})
		if err == nil && name != s0.Name {
			err = fmt.Errorf("answer %q", name)
		}
		return err
	}
	for _, cut := range []struct {
		h      *Host
		ifname string
	}{{l.Switch, s0.SwitchPort}, {s0, HostIf}} {
		if err := cut.h.SetLinkUp(ctx, cut.ifname, false); err != nil {
			t.Fatal(err)
		}
		for _, a := range []netip.Addr{s0.Addr4, s0.Addr6} {
			if err := hello(a, 300*time.Millisecond); err == nil {
				t.Errorf("%s/%s down: hello to %v succeeded", cut.h.Name, cut.ifname, a)
			}
		}
		if err := cut.h.SetLinkUp(ctx, cut.ifname, true); err != nil {
			t.Fatal(err)
		}
		for _, a := range []netip.Addr{s0.Addr4, s0.Addr6} {
			if err := hello(a, 5*time.Second); err != nil {
				t.Errorf("%s/%s up again: hello to %v: %v", cut.h.Name, cut.ifname, a, err)
			}
		}
	}
}

func TestOffloads(t *testing.T) {
	l := NewT(t, Config{Stable: 1, Canary: -1, VethXDPReady: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		h      *Host
		ifname string
	}{{l.Client, HostIf}, {l.Switch, SwitchGatewayPort}} {
		out, err := c.h.Ethtool(ctx, "-k", c.ifname)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "generic-receive-offload: on") {
			t.Errorf("%s/%s: GRO not on:\n%s", c.h.Name, c.ifname, out)
		}
	}
	if err := l.SetTxChecksum(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, h := range append([]*Host{l.Client}, l.Backends()...) {
		out, err := h.Ethtool(ctx, "-k", HostIf)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "tx-checksumming: off") {
			t.Errorf("%s: TX checksum offload still on:\n%s", h.Name, out)
		}
	}
	// Traffic still flows with full checksums.
	if _, err := l.Stable[0].StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(l.Stable[0].Addr4, HelloPort), nil, 100, 4)
	if err != nil || res.OK != 100 {
		t.Errorf("after SetTxChecksum: %v, %v", res, err)
	}
}

func TestParallelLabs(t *testing.T) {
	testenv.RequirePrivileges(t)
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			l := NewT(t, Config{Stable: 1, Canary: 1})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, b := range l.Backends() {
				if _, err := b.StartServers(ctx); err != nil {
					t.Fatal(err)
				}
				// Same addresses in every lab, no interference.
				res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(b.Addr6, HelloPort), nil, 200, 8)
				if err != nil || res.Counts[b.Name] != 200 {
					t.Errorf("%s: %v, %v", b.Name, res, err)
				}
			}
		})
	}
}

// BenchmarkHelloMany measures short TCP connections per second from the
// client to one backend through plain routing (no Graylane): the baseline
// for datapath benchmarks. b.N is capped at MaxHelloConns.
func BenchmarkHelloMany(b *testing.B) {
	l := NewT(b, Config{Stable: 1, Canary: -1, ClientAliases: 8})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s0 := l.Stable[0]
	if _, err := s0.StartServers(ctx); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, HelloPort), l.Client.Addrs4(), min(b.N, MaxHelloConns), 32)
	b.StopTimer()
	if err != nil || res.Failed > 0 {
		b.Fatalf("%v, %v (%v)", res, err, res.Errors)
	}
	b.ReportMetric(float64(res.OK)/res.Elapsed.Seconds(), "conns/s")
}

// TestThreadsLeaveTheLab runs many Do calls and load workers (so some land
// on the main thread, which the runtime cannot end) and checks that after
// Close no thread of the process is left in a lab namespace.
func TestThreadsLeaveTheLab(t *testing.T) {
	l := NewT(t, Config{Stable: 1, Canary: -1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s0 := l.Stable[0]
	if _, err := s0.StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(s0.Addr4, HelloPort), nil, 256, 128)
		if err != nil || res.Failed > 0 {
			t.Fatalf("%v, %v", res, err)
		}
	}
	done := make(chan error, 64)
	for range 64 {
		go func() { done <- l.Client.Do(func() error { return nil }) }()
	}
	for range 64 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	inodes := labInodes(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	assertNoNSRefs(t, inodes)
}
