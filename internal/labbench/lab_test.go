package labbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/service"
)

const (
	webPort   = 80   // the VIP port of the connection-rate test
	iperfPort = 5201 // iperf3, on stable backend 0 only
	// connsPerRun is the number of new connections per measurement.
	connsPerRun = 20000
	concurrency = 48
	bulkSeconds = 2
	rounds      = 5
)

// agent is the graylane-agent binary the tests run, built once.
var agent labagent.Binary

func TestMain(m *testing.M) {
	code := m.Run()
	agent.Remove()
	os.Exit(code)
}

// mode is one way of getting client traffic for the VIP to the backends.
type mode struct {
	name string
	// xdpLab: the lab is prepared for native XDP (GRO on the veth peers,
	// no TX checksum offload), which changes the veths' own performance:
	// such modes are compared with routing in a lab of the same kind.
	xdpLab bool
	// setup makes the gateway steer the VIP.
	setup func(ctx context.Context, lab *netlab.Lab) (steering, error)
}

// base is the mode this one is compared with: routing in a lab of the
// same kind.
func (m mode) base() string {
	if m.xdpLab {
		return "routing-xdp-lab"
	}
	return "routing"
}

// schedule is the order of one round's measurements: the modes in turn,
// and each base again after the last mode compared with it, so that every
// mode lies between two measurements of its base.
func schedule(modes []mode) []mode {
	var out []mode
	for i, m := range modes {
		out = append(out, m)
		last := i+1 == len(modes) || modes[i+1].base() != m.base()
		if last && m.name != m.base() {
			for _, b := range modes {
				if b.name == m.base() {
					out = append(out, b)
					break
				}
			}
		}
	}
	return out
}

// mean is the mean of get over samples, leaving NaNs out (NaN if all are).
func mean(samples []figures, get func(figures) float64) float64 {
	sum, n := 0.0, 0
	for _, f := range samples {
		if v := get(f); !math.IsNaN(v) {
			sum += v
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// steering is what a mode's setup made.
type steering struct {
	conn     []netip.AddrPort // the client's targets in the connection test
	bulk     netip.AddrPort   // and in the bulk test
	teardown func() error     // nil for none
	agentPid int              // the agent's process, if the mode runs one
}

type figures struct {
	connRate   float64 // new connections per second
	bulkUp     float64 // Gbit/s client -> backend
	bulkDown   float64 // Gbit/s backend -> client (the reply path)
	redirected uint64  // Graylane: packets the programs forwarded themselves
	gw         gwCost  // the gateway's own CPU cost, isolated (tc lab only)
}

func BenchmarkLab(b *testing.B) {
	testenv.RequirePrivileges(b)
	for _, tool := range []string{"iperf3", "iptables", "nft", "ethtool"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				b.Fatalf("%s is missing (make deps installs it)", tool)
			}
			b.Skipf("%s is missing (make deps installs it)", tool)
		}
	}
	bin, err := agent.Path()
	if err != nil {
		b.Fatal(err)
	}
	modes := []mode{
		{name: "routing", setup: routing},
		{name: "iptables", setup: iptablesDNAT},
		{name: "nftables", setup: nftablesDNAT},
		{name: "graylane-tc", setup: graylane(bin, "tc")},
		{name: "routing-xdp-lab", xdpLab: true, setup: routing},
		{name: "graylane-xdp", xdpLab: true, setup: graylane(bin, "native")},
	}
	// LABBENCH_MODES=routing,graylane-tc measures only those (a quicker
	// look; routing, or routing-xdp-lab for the XDP lab's modes, is the base).
	if only := os.Getenv("LABBENCH_MODES"); only != "" {
		names := strings.Split(only, ",")
		modes = slices.DeleteFunc(modes, func(m mode) bool { return !slices.Contains(names, m.name) })
	}
	// results[mode][round] are the mode's samples in the round: one, or
	// two for a base (see schedule).
	results := map[string][][]figures{}
	for range b.N {
		for range rounds {
			round := map[string][]figures{}
			for _, m := range schedule(modes) {
				f, err := measure(m)
				if err != nil {
					b.Fatalf("%s: %v", m.name, err)
				}
				round[m.name] = append(round[m.name], f)
			}
			for _, m := range modes {
				results[m.name] = append(results[m.name], round[m.name])
			}
		}
	}
	med := func(name string, get func(figures) float64) float64 {
		var v []float64
		for _, round := range results[name] {
			for _, f := range round {
				v = append(v, get(f))
			}
		}
		return median(v)
	}
	// ratio is the median over rounds of a mode's figure over its base's
	// in the same round: each round measures every mode in turn, minutes
	// apart at most, so a ratio taken within a round cancels the drift
	// between rounds that a ratio of two medians keeps. The base is
	// measured before and after the modes it is the base of, and its
	// figure in the round is the mean of the two: with one sample, its
	// noise moved every ratio of the round alike (rounds where all modes
	// read 0.8x or 1.15x).
	ratios := func(name, base string, get func(figures) float64) []float64 {
		var v []float64
		for r, round := range results[name] {
			if r >= len(results[base]) || len(round) == 0 {
				continue
			}
			v = append(v, mean(round, get)/mean(results[base][r], get))
		}
		return v
	}
	ratio := func(name, base string, get func(figures) float64) float64 {
		return median(ratios(name, base, get))
	}
	conn := func(f figures) float64 { return f.connRate }
	up := func(f figures) float64 { return f.bulkUp }
	down := func(f figures) float64 { return f.bulkDown }
	// The gateway's figures are NaN for a round that could not measure
	// them (not isolated, or the VM's steal time made them unreadable):
	// medians and ratios leave such rounds out.
	gwFigure := func(v func(gwCost) time.Duration, unit float64) func(figures) float64 {
		return func(f figures) float64 {
			if f.gw.perConn == 0 {
				return math.NaN()
			}
			return float64(v(f.gw)) / unit
		}
	}
	gwConn := gwFigure(func(c gwCost) time.Duration { return c.perConn }, 1e3)     // µs
	gwBulk := gwFigure(func(c gwCost) time.Duration { return c.perGB }, 1e6)       // ms
	agent := gwFigure(func(c gwCost) time.Duration { return c.agentPerConn }, 1e3) // µs
	var table strings.Builder
	fmt.Fprintf(&table, "\n%-16s %9s %6s %10s %6s %10s %6s | %11s %6s %9s %6s %14s\n", "mode", "conn/s", "x", "up Gbit/s", "x", "down Gbit/s", "x",
		"gw µs/conn", "x", "gw ms/GB", "x", "agent µs/conn")
	for _, m := range modes {
		base := m.base()
		c, u, d := med(m.name, conn), med(m.name, up), med(m.name, down)
		cx, ux, dx := ratio(m.name, base, conn), ratio(m.name, base, up), ratio(m.name, base, down)
		fmt.Fprintf(&table, "%-16s %9.0f %6.2f %10.2f %6.2f %10.2f %6.2f |", m.name, c, cx, u, ux, d, dx)
		if m.name != base {
			b.ReportMetric(cx, m.name+"-conn-x")
			b.ReportMetric(ux, m.name+"-up-x")
			b.ReportMetric(dx, m.name+"-down-x")
		}
		gc, gb := med(m.name, gwConn), med(m.name, gwBulk)
		if math.IsNaN(gc) {
			fmt.Fprintf(&table, " %11s %6s %9s %6s\n", "-", "", "-", "")
			continue
		}
		// x: the gateway's capacity relative to routing's, i.e. how many
		// more connections (bytes) one gateway CPU forwards: 1/cost.
		// The inverse of the cost ratio, not the ratio of inverses: the
		// base's two samples are averaged as costs, so one sample that
		// reads too little (steal time the check missed) does not take
		// the mean of their inverses with it.
		gcx, gbx := 1/ratio(m.name, base, gwConn), 1/ratio(m.name, base, gwBulk)
		fmt.Fprintf(&table, " %11.2f %6.2f %9.2f %6.2f %14.2f (%d of %d rounds)\n", gc, gcx, gb, gbx, med(m.name, agent),
			len(slices.DeleteFunc(ratios(m.name, base, gwConn), math.IsNaN)), len(results[m.name]))
		if m.name != base {
			b.ReportMetric(gcx, m.name+"-gw-conn-x")
			b.ReportMetric(gbx, m.name+"-gw-bulk-x")
		}
	}
	// The spread: each round's connection-rate ratio, in round order.
	table.WriteString("conn/s x by round:")
	for _, m := range modes {
		base := m.base()
		if m.name == base {
			continue
		}
		fmt.Fprintf(&table, " %s", m.name)
		for _, x := range ratios(m.name, base, conn) {
			fmt.Fprintf(&table, " %.2f", x)
		}
		table.WriteString(";")
	}
	table.WriteString("\n")
	b.Logf("medians of %d rounds (x: median of the ratios to routing, in a lab of the same kind, within each round, routing measured before and after the other modes; gw: the gateway's CPU time, "+
		"isolated on a core of its own, per connection and per GB client -> backend, and its x the gateway's capacity "+
		"relative to routing's, routing cost / mode cost)%s", rounds, table.String())
}

// measure builds a fresh lab, sets the mode up and takes its figures.
func measure(m mode) (figures, error) {
	var f figures
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, netlab.Config{VethXDPReady: m.xdpLab})
	if err != nil {
		return f, err
	}
	defer lab.Close()
	if m.xdpLab {
		if err := lab.SetTxChecksum(ctx, false); err != nil {
			return f, err
		}
	}
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			return f, err
		}
	}
	iperf := lab.Stable[0].Command(ctx, "iperf3", "-s", "--forceflush", "-p", strconv.Itoa(iperfPort), "-B", lab.Stable[0].Addr4.String())
	stdout, err := iperf.StdoutPipe()
	if err != nil {
		return f, err
	}
	iperfDone, err := netlab.Start(iperf)
	if err != nil {
		return f, fmt.Errorf("start iperf3 server: %w", err)
	}
	defer func() {
		iperf.Process.Kill()
		<-iperfDone
	}()
	listening := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Server listening") {
				listening <- true
			}
		}
		close(listening)
	}()
	select {
	case ok := <-listening:
		if !ok {
			return f, errors.New("iperf3 server exited before listening")
		}
	case <-time.After(10 * time.Second):
		return f, errors.New("iperf3 server not listening after 10s")
	}
	st, err := m.setup(ctx, lab)
	if err != nil {
		return f, err
	}
	if st.teardown != nil {
		defer st.teardown()
	}
	conn, bulk := st.conn, st.bulk
	// Check the path before measuring it.
	for _, t := range conn {
		if _, err := lab.Client.Hello(ctx, t, netip.Addr{}); err != nil {
			return f, fmt.Errorf("first connection to %s: %w", t, err)
		}
	}
	if f.connRate, err = connRate(ctx, lab, conn); err != nil {
		return f, err
	}
	up, err := iperf3(ctx, lab, bulk, false)
	if err != nil {
		return f, err
	}
	down, err := iperf3(ctx, lab, bulk, true)
	if err != nil {
		return f, err
	}
	f.bulkUp, f.bulkDown = up.gbps, down.gbps
	if !m.xdpLab && canIsolate() {
		f.gw, err = gatewayCost(ctx, lab, conn, bulk, st.agentPid, iperf.Process.Pid)
		if errors.Is(err, errBusyUnreadable) {
			// The end-to-end figures stand; this round has no gateway's.
			f.gw = gwCost{}
			err = nil
		}
		if err != nil {
			return f, fmt.Errorf("isolated gateway: %w", err)
		}
	}
	return f, nil
}

// median is the middle of v (NaN for none: a mode measured without its
// base).
func median(v []float64) float64 {
	s := slices.DeleteFunc(slices.Clone(v), math.IsNaN)
	if len(s) == 0 {
		return math.NaN()
	}
	slices.Sort(s)
	return s[len(s)/2]
}

// connRate opens connsPerRun connections, spread evenly over targets, and
// returns connections per second.
func connRate(ctx context.Context, lab *netlab.Lab, targets []netip.AddrPort) (float64, error) {
	start := time.Now()
	n, err := openConnections(ctx, lab, targets, connsPerRun)
	if err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// openConnections opens total connections (each: connect, read the hello,
// close), spread evenly over targets, concurrency at a time, and returns
// how many it opened; any failure is an error.
func openConnections(ctx context.Context, lab *netlab.Lab, targets []netip.AddrPort, total int) (int, error) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	ok := 0
	for _, t := range targets {
		wg.Go(func() {
			res, err := lab.Client.HelloMany(ctx, t, nil, total/len(targets), concurrency/len(targets))
			mu.Lock()
			defer mu.Unlock()
			if err == nil && res.Failed > 0 {
				err = fmt.Errorf("%d connections failed: %v", res.Failed, res.Errors)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", t, err))
				return
			}
			ok += res.OK
		})
	}
	wg.Wait()
	return ok, errors.Join(errs...)
}

// bulkResult is what the receiving end of a bulk transfer counted.
type bulkResult struct {
	gbps  float64
	bytes uint64
}

// iperf3 runs a bulk TCP transfer to target and returns what was received.
func iperf3(ctx context.Context, lab *netlab.Lab, target netip.AddrPort, reverse bool) (bulkResult, error) {
	args := []string{"-c", target.Addr().String(), "-p", strconv.Itoa(int(target.Port())), "-t", strconv.Itoa(bulkSeconds), "-J"}
	if reverse {
		args = append(args, "-R")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(bulkSeconds+20)*time.Second)
	defer cancel()
	out, err := lab.Client.Command(ctx, "iperf3", args...).Output()
	if err != nil {
		return bulkResult{}, fmt.Errorf("iperf3 %v: %w: %s", args, err, out)
	}
	var r struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
				Bytes         uint64  `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return bulkResult{}, fmt.Errorf("iperf3 output: %w", err)
	}
	if r.Error != "" {
		return bulkResult{}, fmt.Errorf("iperf3: %s", r.Error)
	}
	return bulkResult{gbps: r.End.SumReceived.BitsPerSecond / 1e9, bytes: r.End.SumReceived.Bytes}, nil
}

// routing: the client talks to the backends' own addresses.
func routing(_ context.Context, lab *netlab.Lab) (steering, error) {
	var conn []netip.AddrPort
	for _, h := range lab.Backends() {
		conn = append(conn, netip.AddrPortFrom(h.Addr4, netlab.HelloPort))
	}
	return steering{conn: conn, bulk: netip.AddrPortFrom(lab.Stable[0].Addr4, iperfPort)}, nil
}

func vipTargets() ([]netip.AddrPort, netip.AddrPort) {
	return []netip.AddrPort{netip.AddrPortFrom(netlab.VIP4, webPort)}, netip.AddrPortFrom(netlab.VIP4, iperfPort)
}

func run(ctx context.Context, h *netlab.Host, name string, args ...string) error {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// iptablesDNAT splits the VIP over the three backends with the statistic
// match (1/3, then 1/2 of the rest, then the rest); conntrack translates
// the replies.
func iptablesDNAT(ctx context.Context, lab *netlab.Lab) (steering, error) {
	gw := lab.Gateway
	vip := netlab.VIP4.String()
	backends := lab.Backends()
	for i, h := range backends {
		args := []string{"-t", "nat", "-A", "PREROUTING", "-d", vip, "-p", "tcp", "--dport", strconv.Itoa(webPort)}
		if left := len(backends) - i; left > 1 {
			args = append(args, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%.5f", 1/float64(left)))
		}
		args = append(args, "-j", "DNAT", "--to-destination", netip.AddrPortFrom(h.Addr4, netlab.HelloPort).String())
		if err := run(ctx, gw, "iptables", args...); err != nil {
			return steering{}, err
		}
	}
	if err := run(ctx, gw, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", vip, "-p", "tcp", "--dport", strconv.Itoa(iperfPort),
		"-j", "DNAT", "--to-destination", netip.AddrPortFrom(lab.Stable[0].Addr4, iperfPort).String()); err != nil {
		return steering{}, err
	}
	conn, bulk := vipTargets()
	return steering{conn: conn, bulk: bulk}, nil
}

// nftablesDNAT does the same with numgen.
func nftablesDNAT(ctx context.Context, lab *netlab.Lab) (steering, error) {
	b := lab.Backends()
	ruleset := fmt.Sprintf(`table ip lb {
	chain prerouting {
		type nat hook prerouting priority dstnat;
		ip daddr %s tcp dport %d dnat to numgen random mod 3 map { 0 : %s, 1 : %s, 2 : %s } : %d
		ip daddr %s tcp dport %d dnat to %s:%d
	}
}
`, netlab.VIP4, webPort, b[0].Addr4, b[1].Addr4, b[2].Addr4, netlab.HelloPort,
		netlab.VIP4, iperfPort, lab.Stable[0].Addr4, iperfPort)
	cmd := lab.Gateway.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return steering{}, fmt.Errorf("nft: %w: %s", err, out)
	}
	conn, bulk := vipTargets()
	return steering{conn: conn, bulk: bulk}, nil
}

// graylane runs the agent in the given attach mode with a web service
// split over the three backends and the iperf3 service on one backend.
func graylane(bin, xdpMode string) func(context.Context, *netlab.Lab) (steering, error) {
	return func(ctx context.Context, lab *netlab.Lab) (steering, error) {
		web := service.Service{Name: "web", VIP: netlab.VIP4, Port: webPort, Protocol: service.TCP, CanaryWeight: 3333,
			Stable: []service.Backend{
				{Addr: netip.AddrPortFrom(lab.Stable[0].Addr4, netlab.HelloPort)},
				{Addr: netip.AddrPortFrom(lab.Stable[1].Addr4, netlab.HelloPort)},
			},
			Canary: []service.Backend{{Addr: netip.AddrPortFrom(lab.Canary[0].Addr4, netlab.HelloPort)}},
		}
		bulk := service.Service{Name: "bulk", VIP: netlab.VIP4, Port: iperfPort, Protocol: service.TCP,
			Stable: []service.Backend{{Addr: netip.AddrPortFrom(lab.Stable[0].Addr4, iperfPort)}}}
		a, err := labagent.Start(ctx, lab, labagent.Options{Binary: bin, Mode: xdpMode, Services: []service.Service{web, bulk}})
		if err != nil {
			return steering{}, err
		}
		conn, bulkTarget := vipTargets()
		return steering{conn: conn, bulk: bulkTarget, teardown: func() error { defer a.Remove(); return a.Stop() }, agentPid: a.Pid()}, nil
	}
}
