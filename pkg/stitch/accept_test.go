package stitch

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	stitchbpf "github.com/graylane/graylane/bpf/stitch"
	"github.com/graylane/graylane/internal/gwcpu"
	"github.com/graylane/graylane/internal/netlab"
)

// acceptLab is a lab whose gateway answers VIP4:80 with the kernel
// accept: one stable and one canary backend serving StartBenchHTTP, a
// rule X-Canary: v2 → canary, and no socket of the gateway in the way.
type acceptLab struct {
	lab        *netlab.Lab
	k          *Kernel
	front      Front
	stopKernel func() // stops k's watch and closes it (once)
}

const acceptPorts = 512 // grants: connections at once (rate x linger, 100 ms, and more)

func newAcceptLab(t *testing.T) *acceptLab {
	t.Helper()
	lab := netlab.NewT(t, netlab.Config{Stable: 1, Canary: 1})
	ctx := t.Context()
	for _, h := range append(append([]*netlab.Host{}, lab.Stable...), lab.Canary...) {
		if err := h.StartBenchHTTP(ctx); err != nil {
			t.Fatal(err)
		}
	}
	f := Front{
		Addr:    netip.AddrPortFrom(netlab.VIP4, 80),
		Gateway: netlab.GatewayBackend4,
		Stable:  []netip.AddrPort{netip.AddrPortFrom(lab.Stable[0].Addr4, netlab.BenchHTTPPort)},
		Canary:  []netip.AddrPort{netip.AddrPortFrom(lab.Canary[0].Addr4, netlab.BenchHTTPPort)},
		Rules:   []HeaderRule{{Name: "X-Canary", Value: "v2", Kind: Exact, Pool: Canary}},
	}
	k, stop := startAccept(t, lab, f, acceptPortList(), nil)
	return &acceptLab{lab: lab, k: k, front: f, stopKernel: stop}
}

// acceptPortList is the gateway ports the tests grant: acceptPorts from
// 40000.
func acceptPortList() []uint16 {
	ports := make([]uint16, acceptPorts)
	for i := range ports {
		ports[i] = uint16(40000 + i)
	}
	return ports
}

// get sends one request on c and reads its answer's body.
func get(t *testing.T, c net.Conn, r *bufio.Reader, path, header string, closing bool) string {
	t.Helper()
	req := "GET " + path + " HTTP/1.1\r\nHost: vip\r\nUser-Agent: graylane-test\r\n" + header
	if closing {
		req += "Connection: close\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: read the body: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", path, resp.Status)
	}
	return string(body)
}

func (a *acceptLab) dial(ctx context.Context, t *testing.T) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := a.lab.Client.DialTCP(ctx, netip.Addr{}, a.front.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c, bufio.NewReader(c)
}

func (a *acceptLab) stat(t *testing.T, s stitchbpf.StitchStat) uint64 {
	t.Helper()
	var per []uint64
	if err := a.k.objs.StitchStats.Lookup(s, &per); err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n
}

func TestAcceptHeaderRule(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	stable, canary := a.lab.Stable[0].Name+"\n", a.lab.Canary[0].Name+"\n"
	const n = 40
	var slowest time.Duration
	for i := range n {
		start := time.Now()
		header, want := "", stable
		if i%2 == 0 {
			header, want = "X-Canary: v2\r\n", canary
		}
		c, r := a.dial(ctx, t)
		if got := get(t, c, r, "/", header, true); got != want {
			t.Fatalf("connection %d (%q): answered by %q, want %q", i, header, got, want)
		}
		c.Close()
		slowest = max(slowest, time.Since(start))
	}
	for _, h := range []*netlab.Host{a.lab.Client, a.lab.Stable[0], a.lab.Canary[0]} {
		out, _ := h.Command(ctx, "nstat", "-az", "TcpRetransSegs", "TcpExtTCPTimeouts", "TcpInCsumErrors", "TcpExtTCPLossProbes").CombinedOutput()
		t.Logf("%s: %s", h.Name, strings.Join(strings.Fields(string(out)), " "))
	}
	t.Logf("slowest connection %v", slowest)
	sig, err := a.k.AcceptSignals(0)
	if err != nil {
		t.Fatal(err)
	}
	for pool, p := range sig {
		if p.Flows != n/2 || p.Connect.Count() != n/2 || p.Response.Count() != n/2 || p.HTTP5xx != 0 {
			t.Errorf("pool %d: flows %d, connects timed %d, responses timed %d, 5xx %d; want %d, %d, %d, 0",
				pool, p.Flows, p.Connect.Count(), p.Response.Count(), p.HTTP5xx, n/2, n/2, n/2)
		}
		t.Logf("pool %d: connect p50 %v, response p50 %v", pool, p.Connect.Quantile(0.5), p.Response.Quantile(0.5))
	}
	if hits := sig[Canary].Hits[0]; hits != n/2 {
		t.Errorf("rule 0 decided %d connections into the canary, want %d", hits, n/2)
	}
	if got := a.stat(t, stitchbpf.StitchStatSTAT_ACCEPT_LIVE); got != n {
		t.Errorf("%d connections went live in the kernel, want %d", got, n)
	}
}

func TestAcceptKeepAliveAndBulk(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	canary := a.lab.Canary[0].Name + "\n"
	c, r := a.dial(ctx, t)
	defer c.Close()
	for i := range 20 {
		if got := get(t, c, r, "/", "X-Canary: v2\r\n", false); got != canary {
			t.Fatalf("request %d: answered by %q, want %q", i, got, canary)
		}
	}
	const size = 64 << 20
	start := time.Now()
	body := get(t, c, r, fmt.Sprintf("/bytes/%d", size), "", false)
	if len(body) != size || strings.Trim(body, "\x00") != "" {
		t.Fatalf("bulk: %d bytes, want %d zero bytes", len(body), size)
	}
	t.Logf("64 MiB through the kernel accept in %v (%.1f Gbit/s)", time.Since(start),
		float64(size*8)/time.Since(start).Seconds()/1e9)
}

// TestAcceptManyConnections: 1 200 one-request connections, 8 at once,
// each decided and joined in the kernel (none dropped for want of a
// grant: the watch gives them back as they end), and the same
// connections routed to a backend for comparison (logged, not asserted).
func TestAcceptManyConnections(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	run := func(to netip.AddrPort) (time.Duration, time.Duration) {
		const workers, each = 8, 150
		var b0, b1 gwcpu.Sample
		b0, _ = gwcpu.ReadIdle(0)
		b1, _ = gwcpu.ReadIdle(1)
		defer func() {
			a0, _ := gwcpu.ReadIdle(0)
			a1, _ := gwcpu.ReadIdle(1)
			t.Logf("%s: machine busy %v a connection", to, (a0.BusySince(b0)+a1.BusySince(b1))/(workers*each))
		}()
		var slow [workers]time.Duration
		start := time.Now()
		done := make(chan struct{})
		for w := range workers {
			go func() {
				defer func() { done <- struct{}{} }()
				for range each {
					s := time.Now()
					c, err := a.lab.Client.DialTCP(ctx, netip.Addr{}, to)
					if err != nil {
						t.Error(err)
						return
					}
					r := bufio.NewReader(c)
					io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
					resp, err := http.ReadResponse(r, nil)
					if err != nil {
						t.Error(err)
						c.Close()
						return
					}
					io.Copy(io.Discard, resp.Body)
					c.Close()
					slow[w] = max(slow[w], time.Since(s))
				}
			}()
		}
		for range workers {
			<-done
		}
		return time.Since(start) / (workers * each), max(slow[0], slow[1], slow[2], slow[3], slow[4], slow[5], slow[6], slow[7])
	}
	routed, rslow := run(a.front.Stable[0])
	kernel, kslow := run(a.front.Addr)
	t.Logf("per connection: routed %v (slowest %v), kernel accept %v (slowest %v)", routed, rslow, kernel, kslow)
	for _, h := range []*netlab.Host{a.lab.Client, a.lab.Stable[0], a.lab.Canary[0]} {
		out, _ := h.Command(ctx, "nstat", "-az", "TcpRetransSegs", "TcpExtTCPTimeouts", "TcpExtTCPLossProbes", "TcpExtTCPSynRetrans", "TcpOutRsts", "TcpExtTCPTimeWaitOverflow", "TcpExtPAWSEstab", "TcpExtTCPACKSkippedSynRecv").CombinedOutput()
		t.Logf("%s: %s", h.Name, strings.Join(strings.Fields(string(out)), " "))
	}
	st, err := a.k.Stats()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("accept: %v", st.Accepts)
	if st.Accepts["live"] != 1200 || st.Accepts["full"] != 0 || st.Accepts["clash"] != 0 {
		t.Errorf("accept counters %v: want 1200 live, none full or clashing", st.Accepts)
	}
}

// TestAcceptSignals5xx: a front whose canary answers 500 to every other
// request counts those first responses as 5xx, and times every one.
func TestAcceptSignals5xx(t *testing.T) {
	a := newAcceptLab(t)
	ctx := t.Context()
	faults := &netlab.Faults{}
	faults.Set(0, 2, 0) // every other answer a 500
	if err := a.lab.Canary[0].StartHTTP(ctx, faults); err != nil {
		t.Fatal(err)
	}
	f := a.front
	f.Addr = netip.AddrPortFrom(netlab.VIP4, 81)
	f.Canary = []netip.AddrPort{netip.AddrPortFrom(a.lab.Canary[0].Addr4, netlab.HTTPPort)}
	f.Signals = 1
	if err := a.k.SetFront(f); err != nil {
		t.Fatal(err)
	}
	const n = 10
	for range n {
		c, err := a.lab.Client.DialTCP(ctx, netip.Addr{}, f.Addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX-Canary: v2\r\nConnection: close\r\n\r\n")
		io.Copy(io.Discard, c)
		c.Close()
	}
	sig, err := a.k.AcceptSignals(1)
	if err != nil {
		t.Fatal(err)
	}
	if c := sig[Canary]; c.Flows != n || c.HTTP5xx != n/2 || c.Response.Count() != n {
		t.Errorf("canary: flows %d, 5xx %d, responses timed %d; want %d, %d, %d", c.Flows, c.HTTP5xx, c.Response.Count(), n, n/2, n)
	}
}
