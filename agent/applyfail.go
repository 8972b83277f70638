package agent

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/graylane/graylane/pkg/datapath"
)

// applyRetry is how soon the reconciler tries again the services the
// kernel could not be given, when no change comes first.
const applyRetry = 2 * time.Second

// applyFailures are the services of the state this node's kernel could
// not be given at the last apply (datapath.PartialError), and why: each
// steers here by what it was before. The zero value holds none.
type applyFailures struct {
	mu     sync.Mutex
	byName map[string]string
}

// set records the failures of an apply (nil: none) and returns the
// services whose failure is new or reads differently, to log once.
func (f *applyFailures) set(p *datapath.PartialError) []string {
	now := map[string]string{}
	if p != nil {
		for name, err := range p.Failed {
			now[name] = err.Error()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var fresh []string
	for _, name := range slices.Sorted(maps.Keys(now)) {
		if f.byName[name] != now[name] {
			fresh = append(fresh, name)
		}
	}
	f.byName = now
	return fresh
}

// of says why service name failed at the last apply ("": it did not).
func (f *applyFailures) of(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byName[name]
}

// collector exports the failures: graylane_apply_failed{node,service} is
// 1 for each failing service, graylane_apply_failed_services counts them
// (0 from the start).
func (f *applyFailures) collector(node string) prometheus.Collector {
	return &failuresCollector{f: f, node: node,
		perService: prometheus.NewDesc("graylane_apply_failed",
			"1 for a service of the cluster state this node's kernel could not be given at the last apply (it steers by its previous state here; `graylanectl status` says why).",
			[]string{"node", "service"}, nil),
		count: prometheus.NewDesc("graylane_apply_failed_services",
			"Services of the cluster state this node's kernel could not be given at the last apply.",
			[]string{"node"}, nil)}
}

type failuresCollector struct {
	f                 *applyFailures
	node              string
	perService, count *prometheus.Desc
}

func (c *failuresCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.perService
	ch <- c.count
}

func (c *failuresCollector) Collect(ch chan<- prometheus.Metric) {
	c.f.mu.Lock()
	names := slices.Sorted(maps.Keys(c.f.byName))
	c.f.mu.Unlock()
	for _, name := range names {
		ch <- prometheus.MustNewConstMetric(c.perService, prometheus.GaugeValue, 1, c.node, name)
	}
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(len(names)), c.node)
}
