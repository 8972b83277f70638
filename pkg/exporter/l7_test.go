package exporter

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	dto "github.com/prometheus/client_model/go"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// l7Fake is an L7Source over a real data path: service auth's proxy saw
// 3 canary connections (one per rule 0 and two by the weight), each
// connected in 2 ms and answered in 30 ms, one with a 5xx.
type l7Fake struct{ dpSource }

func (f l7Fake) AddPools(s datapath.InstalledService, counters *[2]datapath.PoolCounters, lat *[2]datapath.PoolLatency) {
	if s.Name != "auth" {
		return
	}
	c, l := &counters[service.Canary], &lat[service.Canary]
	c.Flows += 3
	c.Errors[datapath.ErrHTTP5xx]++
	for range 3 {
		l.Connect.Observe(2 * time.Millisecond)
		l.Response.Observe(30 * time.Millisecond)
	}
	l.Slow[0] += 3 // slower than the 20 ms threshold
}

func (f l7Fake) RuleHits(s datapath.InstalledService) [][2]uint64 {
	if s.Name != "auth" {
		return nil
	}
	return [][2]uint64{{0, 1}, {0, 0}}
}

func (f l7Fake) L7Cuts() map[string]uint64 {
	return map[string]uint64{"timeout": 2, "malformed": 0}
}

// TestL7Merge: an L7 service's proxy numbers are added to the kernel's in
// the L4 families, with the same labels (flows, errors, the connect and
// response histograms, whose native buckets are the kernel's and whose
// threshold bucket counts the slow responses exactly), and the rule hits
// and cuts have families of their own; a source without L7 services has
// neither.
func TestL7Merge(t *testing.T) {
	testenv.RequirePrivileges(t)
	dp, err := datapath.New(datapath.Options{FlowTable: 1024, MaxServices: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	auth := service.Service{Name: "auth", VIP: netip.MustParseAddr("10.0.0.1"), Port: 80, Protocol: service.TCP,
		Stable: []service.Backend{{Addr: netip.MustParseAddrPort("10.1.0.1:8080")}}, Canary: []service.Backend{{Addr: netip.MustParseAddrPort("10.2.0.1:8080")}}}
	if err := dp.Apply([]service.Service{auth}, datapath.WithThresholds(map[string][]time.Duration{"auth": {20 * time.Millisecond}})); err != nil {
		t.Fatal(err)
	}
	// The kernel's own: 4 canary flows, one reset.
	id, _ := dp.ServiceID("auth")
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	perCPU := make([]bpf.SteerPoolStats, cpus)
	perCPU[0] = bpf.SteerPoolStats{Flows: 4, Errors: [4]uint64{datapath.ErrReset: 1}}
	if err := dp.Objects().PoolCounters.Update(id*2+uint32(service.Canary), perCPU, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}

	fams, err := New("n1", l7Fake{dpSource{dp}}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for key, want := range map[string]float64{
		"graylane_flows_total{node=n1,pool=canary,service=auth}":                      7,
		"graylane_flows_total{node=n1,pool=stable,service=auth}":                      0,
		"graylane_errors_total{kind=http_5xx,node=n1,pool=canary,service=auth}":       1,
		"graylane_errors_total{kind=reset,node=n1,pool=canary,service=auth}":          1,
		"graylane_responses_total{node=n1,pool=canary,service=auth}":                  3,
		"graylane_match_rule_hits_total{node=n1,pool=canary,rule=0,service=auth}":     1,
		"graylane_match_rule_hits_total{node=n1,pool=stable,rule=1,service=auth}":     0,
		"graylane_l7_cuts_total{node=n1,reason=timeout}":                              2,
		"graylane_l7_cuts_total{node=n1,reason=malformed}":                            0,
		"graylane_connect_duration_seconds_count{node=n1,pool=canary,service=auth}":   3,
		"graylane_response_duration_seconds_count{node=n1,pool=canary,service=auth}":  3,
		"graylane_response_duration_seconds_le0.02{node=n1,pool=canary,service=auth}": 0,
		"graylane_response_duration_seconds_count{node=n1,pool=stable,service=auth}":  0,
		"graylane_connect_duration_seconds_native{node=n1,pool=canary,service=auth}":  3,
		"graylane_response_duration_seconds_native{node=n1,pool=canary,service=auth}": 3,
	} {
		got, ok := scraped(byName, key)
		if !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", key, got, ok, want)
		}
	}
	if n := len(byName["graylane_match_rule_hits_total"].GetMetric()); n != 4 {
		t.Errorf("%d rule hit series, want 4 (2 rules x 2 pools)", n)
	}

	plain, err := New("n1", dpSource{dp}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range plain {
		if strings.Contains(f.GetName(), "l7") || strings.Contains(f.GetName(), "match_rule") {
			t.Errorf("a source without L7 services has %s", f.GetName())
		}
	}
}

// scraped reads one value of a family by "name{labels}"; a histogram's
// "_count", "_le<bound>" (its classic bucket) or "_native" (its native
// buckets' and zero bucket's sum).
func scraped(byName map[string]*dto.MetricFamily, key string) (float64, bool) {
	name, labels, _ := strings.Cut(key, "{")
	suffix := ""
	for _, s := range []string{"_count", "_native", "_le"} {
		if i := strings.LastIndex(name, s); i > 0 && byName[name[:i]] != nil {
			name, suffix = name[:i], name[i:]
			break
		}
	}
	for _, m := range byName[name].GetMetric() {
		var pairs []string
		for _, l := range m.Label {
			pairs = append(pairs, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(pairs, ",")+"}" != labels {
			continue
		}
		h := m.GetHistogram()
		switch {
		case suffix == "":
			return m.GetCounter().GetValue(), true
		case suffix == "_count":
			return float64(h.GetSampleCount()), true
		case suffix == "_native":
			n, c := int64(h.GetZeroCount()), int64(0)
			for _, d := range h.GetPositiveDelta() {
				c += d
				n += c
			}
			return float64(n), true
		default:
			for _, b := range h.GetBucket() {
				if strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64) == suffix[3:] {
					return float64(b.GetCumulativeCount()), true
				}
			}
		}
	}
	return 0, false
}
