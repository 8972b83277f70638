// Package exporter exposes what the kernel measured as Prometheus metrics.
// The collector reads the maps at scrape time and builds constant metrics:
// nothing is cached, so a scrape always shows the kernel's current counts.
//
// Latency histograms are exposed both as classic buckets (le at every power
// of two from 2^-20 s to 256 s, and at each of the service's latency
// thresholds, exact from the kernel's threshold counters) and, when the
// scraper negotiates protobuf, as native histograms of schema 3 whose
// buckets are the kernel's own. Every count equals the sum of its buckets.
package exporter

import (
	"math"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/histogram"
	"github.com/graylane/graylane/pkg/service"
)

// Source is what a scrape reads.
type Source interface {
	// Services lists the installed services.
	Services() []datapath.InstalledService
	// View reads the kernel's maps.
	View() *datapath.View
	// FlowTable returns the flow table's entries (as of the last sweep)
	// and its capacity.
	FlowTable() (entries, capacity int)
	// Attachments lists where the programs are attached.
	Attachments() []datapath.Attachment
}

// Collector is a prometheus.Collector of one node's data path.
type Collector struct {
	node string
	src  Source

	packets, bytes, flows, responses, errors *prometheus.Desc
	connect, response                         *prometheus.Desc
	weight, flowEntries, flowCapacity         *prometheus.Desc
	attached, events, scrapeErrors            *prometheus.Desc
}

// New returns the collector for node.
func New(node string, src Source) *Collector {
	sp := []string{"service", "pool", "node"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &Collector{
		node:     node,
		src:      src,
		packets:  d("graylane_packets_total", "Packets of steered flows, by direction (to_backend, to_client).", "service", "pool", "direction", "node"),
		bytes:    d("graylane_bytes_total", "Bytes of steered flows, by direction (to_backend, to_client).", "service", "pool", "direction", "node"),
		flows:    d("graylane_flows_total", "New flows steered into the pool.", sp...),
		connect:  d("graylane_connect_duration_seconds", "Time from a SYN forwarded to the backend to its SYN-ACK, measured in the kernel.", sp...),
		response: d("graylane_response_duration_seconds", "Time from a request's first payload forwarded to the backend to the first response payload, measured in the kernel.", sp...),
		responses: d("graylane_responses_total",
			"Responses timed (the count of graylane_response_duration_seconds).", sp...),
		errors:       d("graylane_errors_total", "Error signals: reset (RST from the backend), http_5xx, icmp (unreachable from or about a backend), timeout (no answer within the service's timeout).", "service", "pool", "kind", "node"),
		weight:       d("graylane_canary_weight_ratio", "Share of new flows (or keys) sent to the canary pool, 0..1, as installed in the kernel.", "service", "node"),
		flowEntries:  d("graylane_flow_table_entries", "Flows in the flow table (counted by the last timeout sweep).", "node"),
		flowCapacity: d("graylane_flow_table_capacity", "Flows the flow table holds before evicting the least recently used.", "node"),
		attached:     d("graylane_attached_info", "A steering program attached to an interface (1), with its role and hook (xdp-native, xdp-generic, tcx, tc-clsact).", "interface", "role", "hook", "node"),
		events:       d("graylane_datapath_events_total", "What the programs did with packets, by path (see docs/datapath.md).", "event", "node"),
		scrapeErrors: d("graylane_scrape_errors", "Maps this scrape could not read (their metrics are missing from it).", "node"),
	}
}

// Describe sends every descriptor.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.packets, c.bytes, c.flows, c.responses, c.errors, c.connect, c.response,
		c.weight, c.flowEntries, c.flowCapacity, c.attached, c.events, c.scrapeErrors} {
		ch <- d
	}
}

// Collect reads the kernel's maps and sends the metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	v := c.src.View()
	failed := 0
	errNames := v.ErrorNames()
	for _, s := range c.src.Services() {
		ch <- prometheus.MustNewConstMetric(c.weight, prometheus.GaugeValue, s.Weight.Ratio(), s.Name, c.node)
		counters, err := v.PoolCounters(s.ID)
		if err != nil {
			failed++
			continue
		}
		lat, err := v.PoolLatency(s.ID)
		if err != nil {
			failed++
			continue
		}
		for _, pool := range []service.Pool{service.Stable, service.Canary} {
			p, pc, pl := pool.String(), &counters[pool], &lat[pool]
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(pc.PacketsToBackend), s.Name, p, "to_backend", c.node)
			ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(pc.PacketsToClient), s.Name, p, "to_client", c.node)
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(pc.BytesToBackend), s.Name, p, "to_backend", c.node)
			ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(pc.BytesToClient), s.Name, p, "to_client", c.node)
			ch <- prometheus.MustNewConstMetric(c.flows, prometheus.CounterValue, float64(pc.Flows), s.Name, p, c.node)
			ch <- prometheus.MustNewConstMetric(c.responses, prometheus.CounterValue, float64(pl.Response.Count()), s.Name, p, c.node)
			for k, name := range errNames {
				ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(pc.Errors[k]), s.Name, p, name, c.node)
			}
			ch <- &histMetric{desc: c.connect, labels: []string{s.Name, p, c.node}, h: pl.Connect}
			ch <- &histMetric{desc: c.response, labels: []string{s.Name, p, c.node}, h: pl.Response,
				thresholds: pl.Thresholds[:], slow: pl.Slow[:]}
		}
	}
	entries, capacity := c.src.FlowTable()
	ch <- prometheus.MustNewConstMetric(c.flowEntries, prometheus.GaugeValue, float64(entries), c.node)
	ch <- prometheus.MustNewConstMetric(c.flowCapacity, prometheus.GaugeValue, float64(capacity), c.node)
	for _, a := range c.src.Attachments() {
		ch <- prometheus.MustNewConstMetric(c.attached, prometheus.GaugeValue, 1, a.Interface, string(a.Role), string(a.Hook), c.node)
	}
	if stats, err := v.Stats(); err == nil {
		for name, n := range stats {
			ch <- prometheus.MustNewConstMetric(c.events, prometheus.CounterValue, float64(n), name, c.node)
		}
	} else {
		failed++
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.GaugeValue, float64(failed), c.node)
}

// classicBounds are the classic buckets every histogram has: each power of
// two of a second in the native range (exact, as they are native bounds).
var classicBounds = func() []int {
	var out []int
	for i := -20 * (1 << histogram.Schema); i <= histogram.MaxIndex; i += 1 << histogram.Schema {
		out = append(out, i)
	}
	return out
}()

// histMetric is a histogram with both classic and native buckets.
type histMetric struct {
	desc       *prometheus.Desc
	labels     []string
	h          histogram.Histogram
	thresholds []time.Duration // with slow: more classic buckets, exact
	slow       []uint64
}

func (m *histMetric) Desc() *prometheus.Desc { return m.desc }

func (m *histMetric) Write(out *dto.Metric) error {
	count := m.h.Count()
	type bucket struct {
		le    float64
		count uint64
	}
	var buckets []bucket
	for _, i := range classicBounds {
		buckets = append(buckets, bucket{histogram.UpperBound(i), m.h.CountAtOrBelow(i)})
	}
	for k, th := range m.thresholds {
		if th <= 0 || k >= len(m.slow) {
			continue
		}
		// At or below the threshold: all but the slow ones. Counts read a
		// moment apart may disagree by a response in flight; keep the
		// cumulative counts consistent.
		below := uint64(0)
		if m.slow[k] < count {
			below = count - m.slow[k]
		}
		buckets = append(buckets, bucket{th.Seconds(), below})
	}
	slices.SortFunc(buckets, func(a, b bucket) int {
		switch {
		case a.le < b.le:
			return -1
		case a.le > b.le:
			return 1
		}
		return 0
	})
	h := &dto.Histogram{
		SampleCount:   proto.Uint64(count),
		SampleSum:     proto.Float64(m.h.Sum.Seconds()),
		Schema:        proto.Int32(histogram.Schema),
		ZeroThreshold: proto.Float64(histogram.ZeroThreshold),
		ZeroCount:     proto.Uint64(m.h.Zero),
	}
	var last float64 = -1
	var running uint64
	for _, b := range buckets {
		if b.le == last {
			continue
		}
		last = b.le
		running = max(running, min(b.count, count))
		h.Bucket = append(h.Bucket, &dto.Bucket{UpperBound: proto.Float64(b.le), CumulativeCount: proto.Uint64(running)})
	}
	h.PositiveSpan, h.PositiveDelta = spans(&m.h)
	out.Histogram = h
	out.Label = prometheus.MakeLabelPairs(m.desc, m.labels)
	return nil
}

// spans encodes the native buckets as spans of consecutive indices and
// deltas between neighbouring counts. An empty histogram gets a no-op span,
// so that it still reads as native.
func spans(h *histogram.Histogram) ([]*dto.BucketSpan, []int64) {
	var spans []*dto.BucketSpan
	var deltas []int64
	var prevCount int64
	prevIndex := math.MinInt32
	for k, c := range h.Counts {
		if c == 0 {
			continue
		}
		i := histogram.MinIndex + k
		if prevIndex != math.MinInt32 && i == prevIndex+1 {
			*spans[len(spans)-1].Length++
		} else {
			offset := int32(i)
			if prevIndex != math.MinInt32 {
				offset = int32(i - prevIndex - 1)
			}
			spans = append(spans, &dto.BucketSpan{Offset: proto.Int32(offset), Length: proto.Uint32(1)})
		}
		deltas = append(deltas, int64(c)-prevCount)
		prevCount = int64(c)
		prevIndex = i
	}
	if len(spans) == 0 {
		spans = []*dto.BucketSpan{{Offset: proto.Int32(0), Length: proto.Uint32(0)}}
	}
	return spans, deltas
}
