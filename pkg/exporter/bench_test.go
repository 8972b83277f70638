package exporter

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

type dpSource struct{ dp *datapath.Datapath }

func (s dpSource) Services() []datapath.InstalledService { return s.dp.Installed() }
func (s dpSource) View() *datapath.View                  { return s.dp.View() }
func (s dpSource) FlowTable() (int, int)                 { return 0, s.dp.FlowTableCapacity() }
func (s dpSource) FlowChurn() datapath.FlowChurn         { return s.dp.FlowChurn() }
func (s dpSource) Attachments() []datapath.Attachment    { return s.dp.Attachments() }

// BenchmarkScrape measures what one /metrics scrape of 1 000 services x 2
// pools costs the agent in CPU (user + system, from getrusage), in the text
// and the protobuf (native histograms) formats, and reports the kernel map
// memory per service.
//
//	go test -run XXX -bench Scrape -benchtime 20x ./pkg/exporter
func BenchmarkScrape(b *testing.B) {
	testenv.RequirePrivileges(b)
	const services = 1000
	dp, err := datapath.New(datapath.Options{FlowTable: 1024, MaxServices: 1024})
	if err != nil {
		b.Fatal(err)
	}
	defer dp.Close()
	var svcs []service.Service
	for i := range services {
		addr := func(net byte) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, net, byte(i / 250), byte(1 + i%250)}), 8080)
		}
		svcs = append(svcs, service.Service{
			Name: fmt.Sprintf("svc-%d", i), VIP: addr(0).Addr(), Port: 80, Protocol: service.TCP,
			Stable: []service.Backend{{Addr: addr(1)}}, Canary: []service.Backend{{Addr: addr(2)}}, CanaryWeight: 500,
			LatencyThresholds: []time.Duration{600 * time.Millisecond, 800 * time.Millisecond},
		})
	}
	if err := dp.Apply(svcs); err != nil {
		b.Fatal(err)
	}
	handler := Handler(New("bench", dpSource{dp}), nil, nil)
	for _, format := range []struct{ name, accept string }{
		{"text", "text/plain;version=0.0.4"},
		{"protobuf", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"},
	} {
		b.Run(format.name, func(b *testing.B) {
			var bytes int64
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				// As Prometheus asks: compressed. Served in-process, so the
				// CPU counted is the agent's alone (no client, no network).
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				req.Header.Set("Accept", format.accept)
				req.Header.Set("Accept-Encoding", "gzip")
				rec := httptest.NewRecorder()
				handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body.String())
				}
				bytes += int64(rec.Body.Len())
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N)/1e6, "cpu-ms/scrape")
			b.ReportMetric(float64(bytes)/float64(b.N)/1024, "gzip-KiB/scrape")
		})
	}
	b.Logf("kernel map memory per installed service: %s", mapBytesPerService(b, dp, services))
}

// cpuTime is the process's user + system CPU time in nanoseconds.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// mapBytesPerService sums what each map holds for one service: the
// preallocated arrays by their share per service id, the hash maps by the
// entries one service adds (two live lookup tables, two backends).
func mapBytesPerService(b *testing.B, dp *datapath.Datapath, services int) string {
	o := dp.Objects()
	cpus, _ := ebpf.PossibleCPU()
	var parts []string
	total := 0
	for _, m := range []struct {
		name    string
		m       *ebpf.Map
		entries int // per service
		percpu  bool
	}{
		{"services", o.Services, 1, false}, {"tables", o.Tables, 2, false}, {"backends", o.Backends, 2, false},
		{"pool_counters", o.PoolCounters, 2, true}, {"params", o.Params, 1, false}, {"latency", o.Latency, 2, false},
	} {
		info, err := m.m.Info()
		if err != nil {
			b.Fatal(err)
		}
		per := int(info.KeySize + info.ValueSize)
		if m.percpu {
			per = int(info.KeySize) + int(info.ValueSize)*cpus
		}
		parts = append(parts, fmt.Sprintf("%s %d B", m.name, per*m.entries))
		total += per * m.entries
	}
	return fmt.Sprintf("%d B (%s; %d CPUs)", total, strings.Join(parts, ", "), cpus)
}
