package labbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
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

// BenchmarkLab compares the ways of steering the VIP (see benchModes): each
// round measures every mode in a fresh lab, and the log shows the medians
// over the rounds and each mode's ratios to its base.
func BenchmarkLab(b *testing.B) {
	testenv.RequirePrivileges(b)
	for tool, pkg := range map[string]string{"iperf3": "iperf3", "iptables": "iptables", "nft": "nftables", "ethtool": "ethtool"} {
		testenv.RequireTool(b, tool, pkg)
	}
	bin, err := agent.Path()
	if err != nil {
		b.Fatal(err)
	}
	modes := benchModes(bin)
	report(b, modes, measureRounds(b, modes))
}

// benchModes are the modes measured, bases included, in their order.
func benchModes(bin string) []mode {
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
	return modes
}

// measureRounds measures the modes for rounds rounds (per b.N), each
// round in the order of schedule.
func measureRounds(b *testing.B, modes []mode) results {
	r := results{}
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
				r[m.name] = append(r[m.name], round[m.name])
			}
		}
	}
	return r
}

// measure builds a fresh lab, sets the mode up and takes its figures.
func measure(m mode) (figures, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab, err := netlab.New(ctx, netlab.Config{VethXDPReady: m.xdpLab})
	if err != nil {
		return figures{}, err
	}
	defer lab.Close()
	if err := prepareLab(ctx, lab, m.xdpLab); err != nil {
		return figures{}, err
	}
	iperfPid, stopIperf, err := startIperfServer(ctx, lab.Stable[0])
	if err != nil {
		return figures{}, err
	}
	defer stopIperf()
	st, err := m.setup(ctx, lab)
	if err != nil {
		return figures{}, err
	}
	if st.teardown != nil {
		defer st.teardown()
	}
	return takeFigures(ctx, lab, m, st, iperfPid)
}

// prepareLab turns TX checksum offload off in a lab for XDP and starts
// the servers on every backend.
func prepareLab(ctx context.Context, lab *netlab.Lab, xdpLab bool) error {
	if xdpLab {
		if err := lab.SetTxChecksum(ctx, false); err != nil {
			return err
		}
	}
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			return err
		}
	}
	return nil
}

// startIperfServer starts an iperf3 server on h's address and waits until
// it listens; stop ends it.
func startIperfServer(ctx context.Context, h *netlab.Host) (pid int, stop func(), err error) {
	iperf := h.Command(ctx, "iperf3", "-s", "--forceflush", "-p", strconv.Itoa(iperfPort), "-B", h.Addr4.String())
	stdout, err := iperf.StdoutPipe()
	if err != nil {
		return 0, nil, err
	}
	done, err := netlab.Start(iperf)
	if err != nil {
		return 0, nil, fmt.Errorf("start iperf3 server: %w", err)
	}
	stop = func() {
		iperf.Process.Kill()
		<-done
	}
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
			stop()
			return 0, nil, errors.New("iperf3 server exited before listening")
		}
	case <-time.After(10 * time.Second):
		stop()
		return 0, nil, errors.New("iperf3 server not listening after 10s")
	}
	return iperf.Process.Pid, stop, nil
}

// takeFigures checks the path st made, then measures the connection
// rate, the bulk throughput both ways and, if it can be isolated, the
// gateway's CPU cost.
func takeFigures(ctx context.Context, lab *netlab.Lab, m mode, st steering, iperfPid int) (figures, error) {
	var f figures
	var err error
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
		f.gw, err = gatewayCost(ctx, lab, conn, bulk, st.agentPid, iperfPid)
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
