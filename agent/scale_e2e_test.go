package agent_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// BenchmarkAgentFlowScale (issue 21, point 5): a real agent with flowTable
// 1 Mi (GRAYLANE_SCALE_FLOWS overrides) and its flow table filled with
// confirmed flows of a live service, against the same agent with one flow:
// its resident memory (the agent holds no per-flow state; its walks read
// the table in batches), the CPU its walks of the table take (utime +
// stime over a window, as a share of one core), and the time of a scrape
// of /metrics (which reads the walks' counts, not the table).
//
//	go test -run XXX -bench AgentFlowScale -benchtime 1x -v ./agent
func BenchmarkAgentFlowScale(b *testing.B) {
	n := 1 << 20
	if v := os.Getenv("GRAYLANE_SCALE_FLOWS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	e := setupWith(b, netlab.Config{}, labagent.Options{Mode: "auto", FlowTable: n})
	echo := web("echo", e.lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 0)
	if err := e.agent.Apply(e.ctx, []service.Service{echo}); err != nil {
		b.Fatal(err)
	}
	// One real connection, kept open (the echo server greets and waits):
	// its entry is a confirmed, open flow of the live service, stamped
	// with the live idle clock; the fill copies it. (A closed one would
	// carry its FINs into the copies, and they would leave after the
	// 10 s linger.)
	conn, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, 81))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if _, err := bufio.NewReader(conn).ReadString('\n'); err != nil {
		b.Fatal(err)
	}
	flows, err := ebpf.LoadPinnedMap(filepath.Join(e.agent.PinPath(), "maps", "flows"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer flows.Close()
	for range b.N {
		empty := measureAgent(b, e, 10*time.Second)
		fillLike(b, flows, n)
		waitFlowEntries(b, e, n*9/10)
		full := measureAgent(b, e, 30*time.Second)
		// The flows stayed through the window: the figures are a full
		// table's, not a table being emptied.
		waitFlowEntries(b, e, n*9/10)
		b.Logf("flowTable %d, 1 flow: %s", n, empty)
		b.Logf("flowTable %d, %d flows: %s", n, n, full)
		b.ReportMetric(full.rssMiB, "rss-MiB-full")
		b.ReportMetric(full.hwmMiB, "hwm-MiB-full")
		b.ReportMetric(empty.rssMiB, "rss-MiB-empty")
		b.ReportMetric(100*full.cpuShare, "cpu-%-full")
		b.ReportMetric(100*empty.cpuShare, "cpu-%-empty")
		b.ReportMetric(float64(full.scrapeMax.Microseconds())/1000, "scrape-max-ms-full")
		b.ReportMetric(float64(full.scrapeMedian.Microseconds())/1000, "scrape-p50-ms-full")
		b.ReportMetric(float64(empty.scrapeMedian.Microseconds())/1000, "scrape-p50-ms-empty")
	}
}

// agentFigures are an agent process's resident memory (now and its high
// water mark), its CPU over a window, and /metrics scrape times.
type agentFigures struct {
	rssMiB, hwmMiB          float64
	cpuShare                float64 // of one core, over the window
	scrapeMedian, scrapeMax time.Duration
}

func (f agentFigures) String() string {
	return fmt.Sprintf("RSS %.1f MiB (high water %.1f MiB), CPU %.2f %% of a core, scrape p50 %v max %v",
		f.rssMiB, f.hwmMiB, 100*f.cpuShare, f.scrapeMedian.Round(10*time.Microsecond), f.scrapeMax.Round(10*time.Microsecond))
}

// measureAgent takes the agent's figures over window, scraping /metrics
// once a second during it.
func measureAgent(b *testing.B, e *env, window time.Duration) agentFigures {
	b.Helper()
	cpu0 := agentCPU(b, e)
	start := time.Now()
	var scrapes []time.Duration
	for time.Since(start) < window {
		t0 := time.Now()
		resp, err := gatewayHTTP(e.lab).Get("http://127.0.0.1:9477/metrics")
		if err != nil {
			b.Fatal(err)
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			b.Fatal(err)
		}
		scrapes = append(scrapes, time.Since(t0))
		time.Sleep(time.Second)
	}
	elapsed := time.Since(start)
	cpu := agentCPU(b, e) - cpu0
	slices.Sort(scrapes)
	rss, err := e.agent.MemoryKiB("VmRSS")
	if err != nil {
		b.Fatal(err)
	}
	hwm, err := e.agent.MemoryKiB("VmHWM")
	if err != nil {
		b.Fatal(err)
	}
	return agentFigures{
		rssMiB:       float64(rss) / 1024,
		hwmMiB:       float64(hwm) / 1024,
		cpuShare:     cpu.Seconds() / elapsed.Seconds(),
		scrapeMedian: scrapes[len(scrapes)/2],
		scrapeMax:    scrapes[len(scrapes)-1],
	}
}

// fillLike fills flows to n entries with copies of the one flow in it,
// each with another client address.
func fillLike(b *testing.B, flows *ebpf.Map, n int) {
	b.Helper()
	var key bpf.SteerFlowKey
	var value bpf.SteerFlow
	if err := flows.NextKey(nil, &key); err != nil {
		b.Fatalf("the live connection's flow: %v", err)
	}
	if err := flows.Lookup(&key, &value); err != nil {
		b.Fatal(err)
	}
	const batch = 1 << 16
	keys := make([]bpf.SteerFlowKey, batch)
	values := make([]bpf.SteerFlow, batch)
	for i := range values {
		values[i] = value
	}
	for first := 0; first < n-1; first += batch {
		m := min(batch, n-1-first)
		for i := range m {
			j := first + i
			keys[i] = key
			// 2001:db8::/96 plus the flow's number: no lab host uses it.
			keys[i].Src = [16]byte{0x20, 0x01, 0x0d, 0xb8, 12: byte(j >> 24), 13: byte(j >> 16), 14: byte(j >> 8), 15: byte(j)}
		}
		if _, err := flows.BatchUpdate(keys[:m], values[:m], nil); err != nil {
			b.Fatalf("fill the flow table: %v", err)
		}
	}
}

// waitFlowEntries waits until the agent's walks count at least n flows
// (graylane_flow_table_entries).
func waitFlowEntries(b *testing.B, e *env, n int) {
	b.Helper()
	// A walk of 16 Mi flows takes about 6 s, and walks are spaced by 20
	// times their duration (walkSpacing): the first may come minutes late.
	ctx, cancel := context.WithTimeout(e.ctx, 5*time.Minute)
	defer cancel()
	for {
		got := flowTableEntries(b, e)
		if got >= n {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("the agent counts %d flows, want at least %d", got, n)
		case <-time.After(time.Second):
		}
	}
}

// flowTableEntries reads graylane_flow_table_entries from /metrics.
func flowTableEntries(b *testing.B, e *env) int {
	b.Helper()
	resp, err := gatewayHTTP(e.lab).Get("http://127.0.0.1:9477/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "graylane_flow_table_entries"); ok {
			f := strings.Fields(rest)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				b.Fatal(err)
			}
			return int(v)
		}
	}
	b.Fatal("no graylane_flow_table_entries in /metrics")
	return 0
}

// agentCPU is the agent's CPU time so far.
func agentCPU(b *testing.B, e *env) time.Duration {
	b.Helper()
	d, err := e.agent.CPUTime()
	if err != nil {
		b.Fatal(err)
	}
	return d
}
