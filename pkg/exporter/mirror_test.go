package exporter

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	dto "github.com/prometheus/client_model/go"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// TestMirrorFamilies: a scrape exposes the kernel's mirroring and capture
// counters of every service and pool, summed over CPUs, under the node,
// pool, service (and to) labels, and a service that mirrors nothing has
// its series at 0.
func TestMirrorFamilies(t *testing.T) {
	byName, got, cpus := scrapeMirrored(t)
	n := float64(cpus)
	for name, want := range map[string]struct {
		to     bool       // has the to label
		values [2]float64 // auth canary: to=interface, to=capture (or the one value)
	}{
		"graylane_mirror_packets_total":  {true, [2]float64{1 * n, 5 * n}},
		"graylane_mirror_bytes_total":    {true, [2]float64{2 * n, 6 * n}},
		"graylane_mirror_failed_total":   {false, [2]float64{3 * n}},
		"graylane_mirror_gso_total":      {false, [2]float64{4 * n}},
		"graylane_capture_dropped_total": {false, [2]float64{7 * n}},
	} {
		f := byName[name]
		if f == nil {
			t.Errorf("no family %s", name)
			continue
		}
		tos := []string{""}
		if want.to {
			tos = []string{"interface", "capture"}
		}
		if f.GetType() != dto.MetricType_COUNTER || len(f.Metric) != 2*2*len(tos) {
			t.Errorf("%s: type %v, %d series; want counters, %d (2 services x 2 pools x %d)", name, f.GetType(), len(f.Metric), 4*len(tos), len(tos))
		}
		if help := f.GetHelp(); want.to && !(strings.Contains(help, "to: interface") && strings.Contains(help, "capture")) {
			t.Errorf("%s: help %q does not say what to is", name, help)
		}
		for i, to := range tos {
			for _, c := range []struct {
				svc, pool string
				want      float64
			}{{"auth", "canary", want.values[i]}, {"auth", "stable", 0}, {"quiet", "canary", 0}, {"quiet", "stable", 0}} {
				key := name + "{node=n1,pool=" + c.pool + ",service=" + c.svc
				if to != "" {
					key += ",to=" + to
				}
				key += "}"
				if v, ok := got[key]; !ok || v != c.want {
					t.Errorf("%s = %v (present %v), want %v", key, v, ok, c.want)
				}
			}
		}
	}
}

// scrapeMirrored installs two services, auth and quiet, in a data path of
// its own, sets the mirror counters of auth's canary pool on every CPU to
// 1..7 (in the order of MirrorStats's fields), and scrapes node n1. It
// returns the families by name, each series' value by
// "family{label=value,...}" (labels in their order), and the CPUs counted.
func scrapeMirrored(t *testing.T) (map[string]*dto.MetricFamily, map[string]float64, int) {
	testenv.RequirePrivileges(t)
	dp, err := datapath.New(datapath.Options{FlowTable: 1024, MaxServices: 16})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dp.Close() })
	svc := func(name string, net byte) service.Service {
		addr := func(pool byte) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, pool, 0, net}), 8080)
		}
		return service.Service{Name: name, VIP: addr(0).Addr(), Port: 80, Protocol: service.TCP,
			Stable: []service.Backend{{Addr: addr(1)}}, Canary: []service.Backend{{Addr: addr(2)}}}
	}
	if err := dp.Apply([]service.Service{svc("auth", 1), svc("quiet", 2)}); err != nil {
		t.Fatal(err)
	}
	id, _ := dp.ServiceID("auth")
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		t.Fatal(err)
	}
	perCPU := make([]bpf.SteerMirrorStats, cpus)
	for c := range perCPU {
		perCPU[c] = bpf.SteerMirrorStats{Copies: 1, CopyBytes: 2, CopyFailed: 3, CopyGso: 4, Captured: 5, CapturedBytes: 6, CaptureDropped: 7}
	}
	key := id*2 + uint32(service.Canary) // svc_id * POOL_COUNT + pool (bpf/include/maps.h)
	if err := dp.Objects().MirrorCounters.Update(key, perCPU, ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	fams, err := New("n1", dpSource{dp}).Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName, got := map[string]*dto.MetricFamily{}, map[string]float64{}
	for _, f := range fams {
		byName[f.GetName()] = f
		for _, m := range f.Metric {
			var pairs []string
			for _, l := range m.Label {
				pairs = append(pairs, l.GetName()+"="+l.GetValue())
			}
			got[f.GetName()+"{"+strings.Join(pairs, ",")+"}"] = m.GetCounter().GetValue()
		}
	}
	return byName, got, cpus
}
