// Package exporter exposes what the kernel measured as Prometheus metrics
// (with, for L7 services, what the agent's proxy measured in its stead:
// see L7Source).
// A scrape reads the maps and builds the metric families directly (a
// prometheus.Gatherer): nothing is cached, so it always shows the kernel's
// current counts, and a scrape of a thousand services stays cheap (no
// per-sample Metric objects, registry checks or re-sorting; see
// BenchmarkScrape).
//
// Latency histograms are exposed both as classic buckets (le at each bound
// of a Classic layout, by default 1-2.5-5 per decade from 100 µs to 10 s,
// and at each of the service's latency thresholds, exact from the kernel's
// threshold counters; see Classic for how the others are counted) and,
// when the scraper negotiates protobuf, as native histograms of schema 3
// whose buckets are the kernel's own. Every count equals the sum of its
// buckets. docs/metrics.md tells what each costs in series.
package exporter

import (
	"compress/gzip"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
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
	// FlowTable returns the flow table's entries (as of the last walk of
	// the whole table)
	// and its capacity.
	FlowTable() (entries, capacity int)
	// FlowChurn returns the pending flows and the evictions so far, as
	// of the last walk of the tables.
	FlowChurn() datapath.FlowChurn
	// Attachments lists where the programs are attached.
	Attachments() []datapath.Attachment
}

// Gatherer builds one node's graylane_* metric families at each scrape.
type Gatherer struct {
	node    string
	src     Source
	classic *Classic
}

// New returns the gatherer for node, whose latency histograms have the
// classic buckets of DefaultClassicBuckets.
func New(node string, src Source) *Gatherer {
	classic, _ := NewClassic(DefaultClassicBuckets()) // valid: TestDefaultClassicBuckets
	return NewWithClassic(node, src, classic)
}

// NewWithClassic returns the gatherer for node, whose latency histograms
// have the classic buckets of layout classic.
func NewWithClassic(node string, src Source, classic *Classic) *Gatherer {
	return &Gatherer{node: node, src: src, classic: classic}
}

// Handler serves /metrics: the node's graylane_* families, then those of
// extra (the Go runtime and process collectors, say), in the format the
// scraper negotiates (protobuf carries the native histograms). Compression
// is gzip at its fastest level: at a thousand services the default level
// cost more CPU than building the families.
func Handler(g *Gatherer, extra prometheus.Gatherer, errorLog promhttp.Logger) http.Handler {
	all := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		ours, err := g.Gather()
		if extra == nil {
			return ours, err
		}
		theirs, err2 := extra.Gather()
		if err == nil {
			err = err2
		}
		return append(ours, theirs...), err
	})
	h := promhttp.HandlerFor(all, promhttp.HandlerOpts{ErrorLog: errorLog, DisableCompression: true, ErrorHandling: promhttp.ContinueOnError})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var out io.Writer = w
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			defer zw.Close()
			w.Header().Set("Content-Encoding", "gzip")
			w = gzipResponse{ResponseWriter: w, zw: zw}
			out = zw
		}
		if expfmt.Negotiate(r.Header).FormatType() != expfmt.TypeTextPlain {
			h.ServeHTTP(w, r)
			return
		}
		// The text format: our families through the lean writer, the
		// others through expfmt.
		ours, err := g.Gather()
		if err != nil && errorLog != nil {
			errorLog.Println(err)
		}
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		if err := writeText(out, ours); err != nil {
			return
		}
		if extra == nil {
			return
		}
		theirs, err := extra.Gather()
		if err != nil && errorLog != nil {
			errorLog.Println(err)
		}
		enc := expfmt.NewEncoder(out, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range theirs {
			if err := enc.Encode(f); err != nil {
				return
			}
		}
	})
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.TrimSpace(enc) == "gzip" && !strings.Contains(strings.ReplaceAll(params, " ", ""), "q=0") {
			return true
		}
	}
	return false
}

type gzipResponse struct {
	http.ResponseWriter
	zw *gzip.Writer
}

func (g gzipResponse) Write(p []byte) (int, error) { return g.zw.Write(p) }

// family starts a metric family.
func family(name, help string, t dto.MetricType) *dto.MetricFamily {
	return &dto.MetricFamily{Name: proto.String(name), Help: proto.String(help), Type: t.Enum()}
}

func label(name, value string) *dto.LabelPair {
	return &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)}
}

// arena hands out the many small objects a scrape builds from a few large
// allocations: a thousand services make some 10^5 samples, and allocating
// each value on its own made the garbage collector the scrape's main cost.
type arena struct {
	metrics  []dto.Metric
	counters []dto.Counter
	floats   []float64
	uints    []uint64
	buckets  []dto.Bucket
	classic  []bucket // scratch: one histogram's classic buckets as they are built
}

func newArena(samples int) *arena {
	return &arena{
		metrics:  make([]dto.Metric, 0, samples),
		counters: make([]dto.Counter, 0, samples),
		floats:   make([]float64, 0, samples*2),
		uints:    make([]uint64, 0, samples),
	}
}

func (a *arena) float(v float64) *float64 {
	if len(a.floats) == cap(a.floats) {
		a.floats = make([]float64, 0, 1024)
	}
	a.floats = append(a.floats, v)
	return &a.floats[len(a.floats)-1]
}

func (a *arena) uint(v uint64) *uint64 {
	if len(a.uints) == cap(a.uints) {
		a.uints = make([]uint64, 0, 1024)
	}
	a.uints = append(a.uints, v)
	return &a.uints[len(a.uints)-1]
}

func (a *arena) metric(labels []*dto.LabelPair) *dto.Metric {
	if len(a.metrics) == cap(a.metrics) {
		a.metrics = make([]dto.Metric, 0, 1024)
	}
	a.metrics = append(a.metrics, dto.Metric{Label: labels})
	return &a.metrics[len(a.metrics)-1]
}

func (a *arena) counter(labels []*dto.LabelPair, v uint64) *dto.Metric {
	m := a.metric(labels)
	if len(a.counters) == cap(a.counters) {
		a.counters = make([]dto.Counter, 0, 1024)
	}
	a.counters = append(a.counters, dto.Counter{Value: a.float(float64(v))})
	m.Counter = &a.counters[len(a.counters)-1]
	return m
}

func (a *arena) bucket(le float64, count uint64) *dto.Bucket {
	if len(a.buckets) == cap(a.buckets) {
		a.buckets = make([]dto.Bucket, 0, 4096)
	}
	a.buckets = append(a.buckets, dto.Bucket{UpperBound: a.float(le), CumulativeCount: a.uint(count)})
	return &a.buckets[len(a.buckets)-1]
}

func gauge(labels []*dto.LabelPair, v float64) *dto.Metric {
	return &dto.Metric{Label: labels, Gauge: &dto.Gauge{Value: proto.Float64(v)}}
}

// Gather reads the kernel's maps and returns the families. A service whose
// maps cannot be read is left out and counted in graylane_scrape_errors.
func (g *Gatherer) Gather() ([]*dto.MetricFamily, error) {
	v := g.src.View()
	node := label("node", g.node)
	l := newSeriesLabels(node, v.ErrorNames())
	failed := 0
	svcs := g.src.Services()
	sort.Slice(svcs, func(i, j int) bool { return svcs[i].Name < svcs[j].Name })
	// Metrics of each service and pool: 13 of the pool families (counters
	// and histograms, whose buckets the arena allocates as they come) and
	// 7 of the mirroring ones.
	a := newArena(len(svcs) * 2 * (13 + 7))
	pf := newPoolFamilies(g.classic, newL7Families(g.src))
	if err := pf.addServices(a, v, l, svcs); err != nil {
		failed++
	}
	mf := newMirrorFamilies()
	if err := mf.addServices(a, v, l, svcs); err != nil {
		failed++
	}
	nodeOnly := []*dto.LabelPair{node}
	fill, capf, pending, evictions := g.flowTableFamilies(nodeOnly)
	attached := g.attachedFamily(node)
	events, err := eventsFamily(a, v, node)
	if err != nil {
		failed++
	}
	pf.l7.addCuts(a, node)
	pf.l7.addStitch(a, node)
	scrapeErrors := family("graylane_scrape_errors", "Maps this scrape could not read (their metrics are missing from it).", dto.MetricType_GAUGE)
	scrapeErrors.Metric = []*dto.Metric{gauge(nodeOnly, float64(failed))}

	out := []*dto.MetricFamily{attached, pf.bytes, g.desiredFamily(node), pf.weight, mf.dropped, pf.connect, events, pf.errs, pf.misses, fill, capf, pending, evictions, pf.flows,
		pf.l7.cuts, pf.l7.accepts, pf.l7.stitchP, pf.l7.stitched, pf.l7.stitches, pf.l7.hits, mf.bytes, mf.failed, mf.gso, mf.packets, pf.packets, pf.response, pf.responses, scrapeErrors}
	// An empty family is not valid exposition: leave those out.
	return slices.DeleteFunc(out, func(f *dto.MetricFamily) bool { return len(f.Metric) == 0 }), nil
}

// seriesLabels are the label pairs every service's series share.
type seriesLabels struct {
	node                *dto.LabelPair
	pools               [2]*dto.LabelPair // indexed by service.Pool
	toBackend, toClient *dto.LabelPair
	kinds               []*dto.LabelPair // error kinds, in the kernel's order
}

func newSeriesLabels(node *dto.LabelPair, errorNames []string) *seriesLabels {
	l := &seriesLabels{
		node:      node,
		pools:     [2]*dto.LabelPair{label("pool", service.Stable.String()), label("pool", service.Canary.String())},
		toBackend: label("direction", "to_backend"),
		toClient:  label("direction", "to_client"),
	}
	for _, name := range errorNames {
		l.kinds = append(l.kinds, label("kind", name))
	}
	return l
}

// poolFamilies are the families with a series for each service and pool,
// and the canary weight, one for each service.
type poolFamilies struct {
	packets, bytes, flows, responses, errs *dto.MetricFamily
	misses                                 *dto.MetricFamily
	connect, response                      *dto.MetricFamily
	weight                                 *dto.MetricFamily
	classic                                *Classic
	l7                                     *l7Families // L7 services' numbers, added to the kernel's
}

func newPoolFamilies(classic *Classic, l7 *l7Families) *poolFamilies {
	return &poolFamilies{
		classic:   classic,
		l7:        l7,
		packets:   family("graylane_packets_total", "Packets of steered flows, by direction (to_backend, to_client).", dto.MetricType_COUNTER),
		bytes:     family("graylane_bytes_total", "Bytes of steered flows, by direction (to_backend, to_client).", dto.MetricType_COUNTER),
		flows:     family("graylane_flows_total", "New flows steered into the pool.", dto.MetricType_COUNTER),
		misses:    family("graylane_flow_misses_total", "TCP packets carrying data of a flow with no entry in the flow table, steered by the hash alone into the pool: a live connection whose entry was evicted or expired.", dto.MetricType_COUNTER),
		responses: family("graylane_responses_total", "Responses timed (the count of graylane_response_duration_seconds).", dto.MetricType_COUNTER),
		errs:      family("graylane_errors_total", "Error signals: reset (RST from the backend), http_5xx, icmp (unreachable from or about a backend), timeout (no answer within the service's timeout), grpc (a gRPC call of an L7 service answered with grpc-status other than 0).", dto.MetricType_COUNTER),
		connect:   family("graylane_connect_duration_seconds", "Time from a SYN forwarded to the backend to its SYN-ACK, measured in the kernel.", dto.MetricType_HISTOGRAM),
		response:  family("graylane_response_duration_seconds", "Time from a request's first payload forwarded to the backend to the first response payload, measured in the kernel.", dto.MetricType_HISTOGRAM),
		weight:    family("graylane_canary_weight_ratio", "Share of new flows (or keys) sent to the canary pool, 0..1, as installed in the kernel.", dto.MetricType_GAUGE),
	}
}

// addServices reads every service's pools in one pass over the maps and
// adds their series. If the maps cannot be read it adds none.
func (f *poolFamilies) addServices(a *arena, v *datapath.View, l *seriesLabels, svcs []datapath.InstalledService) error {
	maxID := uint32(0)
	for _, s := range svcs {
		maxID = max(maxID, s.ID+1)
	}
	allCounters, allLatency, err := v.AllPools(maxID)
	if err != nil {
		return err
	}
	for _, s := range svcs {
		f.l7.addPools(a, l, s, &allCounters[s.ID], &allLatency[s.ID])
		f.addService(a, l, s, &allCounters[s.ID], &allLatency[s.ID])
	}
	return nil
}

func (f *poolFamilies) addService(a *arena, l *seriesLabels, s datapath.InstalledService, counters *[2]datapath.PoolCounters, lat *[2]datapath.PoolLatency) {
	node, svc := l.node, label("service", s.Name)
	f.weight.Metric = append(f.weight.Metric, gauge([]*dto.LabelPair{node, svc}, s.Weight.Ratio()))
	for p, pool := range l.pools {
		pc, pl := &counters[p], &lat[p]
		base := []*dto.LabelPair{node, pool, svc}
		up := []*dto.LabelPair{l.toBackend, node, pool, svc}
		down := []*dto.LabelPair{l.toClient, node, pool, svc}
		f.packets.Metric = append(f.packets.Metric, a.counter(up, pc.PacketsToBackend), a.counter(down, pc.PacketsToClient))
		f.bytes.Metric = append(f.bytes.Metric, a.counter(up, pc.BytesToBackend), a.counter(down, pc.BytesToClient))
		f.flows.Metric = append(f.flows.Metric, a.counter(base, pc.Flows))
		f.misses.Metric = append(f.misses.Metric, a.counter(base, pc.Misses))
		f.responses.Metric = append(f.responses.Metric, a.counter(base, pl.Response.Count()))
		for k, kind := range l.kinds {
			f.errs.Metric = append(f.errs.Metric, a.counter([]*dto.LabelPair{kind, node, pool, svc}, pc.Errors[k]))
		}
		m := a.metric(base)
		m.Histogram = a.histogram(&pl.Connect, f.classic, nil, nil)
		f.connect.Metric = append(f.connect.Metric, m)
		m = a.metric(base)
		m.Histogram = a.histogram(&pl.Response, f.classic, pl.Thresholds[:], pl.Slow[:])
		f.response.Metric = append(f.response.Metric, m)
	}
}

// flowTableFamilies returns the flow table's fill and capacity, the
// pending table's fill, and the flows evicted.
func (g *Gatherer) flowTableFamilies(nodeOnly []*dto.LabelPair) (fill, capf, pending, evictions *dto.MetricFamily) {
	entries, capacity := g.src.FlowTable()
	churn := g.src.FlowChurn()
	fill = family("graylane_flow_table_entries", "Flows in the flow table (counted by the last walk of the whole table, at most 10 s old).", dto.MetricType_GAUGE)
	fill.Metric = []*dto.Metric{gauge(nodeOnly, float64(entries))}
	capf = family("graylane_flow_table_capacity", "Flows the flow table holds before evicting the least recently used.", dto.MetricType_GAUGE)
	capf.Metric = []*dto.Metric{gauge(nodeOnly, float64(capacity))}
	pending = family("graylane_flow_pending_entries", "Flows not confirmed yet (TCP handshakes, first UDP exchanges) in the pending table, by the last walk.", dto.MetricType_GAUGE)
	pending.Metric = []*dto.Metric{gauge(nodeOnly, float64(churn.Pending))}
	evictions = family("graylane_flow_evictions_total", "Confirmed flows the flow table evicted to make room (live or not), by the walks' account of what came and went.", dto.MetricType_COUNTER)
	evictions.Metric = []*dto.Metric{{Label: nodeOnly, Counter: &dto.Counter{Value: proto.Float64(float64(churn.Evictions))}}}
	return fill, capf, pending, evictions
}

// attachedFamily returns one series for each attached program.
func (g *Gatherer) attachedFamily(node *dto.LabelPair) *dto.MetricFamily {
	attached := family("graylane_attached_info", "A steering program attached to an interface (1), with its role and hook (xdp-native, xdp-generic, tcx, tc-clsact).", dto.MetricType_GAUGE)
	for _, a := range g.src.Attachments() {
		attached.Metric = append(attached.Metric, gauge([]*dto.LabelPair{label("hook", string(a.Hook)), label("interface", a.Interface), node, label("role", string(a.Role))}, 1))
	}
	return attached
}

// eventsFamily returns the data path's event counters, by name; empty if
// they cannot be read.
func eventsFamily(a *arena, v *datapath.View, node *dto.LabelPair) (*dto.MetricFamily, error) {
	events := family("graylane_datapath_events_total", "What the programs did with packets, by path (see docs/datapath.md).", dto.MetricType_COUNTER)
	stats, err := v.Stats()
	if err != nil {
		return events, err
	}
	names := make([]string, 0, len(stats))
	for name := range stats {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		events.Metric = append(events.Metric, a.counter([]*dto.LabelPair{label("event", name), node}, stats[name]))
	}
	return events, nil
}

// Shared, read-only values every histogram points at.
var (
	schema        = int32(histogram.Schema)
	zeroThreshold = histogram.ZeroThreshold
)

// histogram builds a histogram with the classic buckets of layout c (plus
// one at each threshold, counted exactly from slow) and native buckets.
func (a *arena) histogram(h *histogram.Histogram, c *Classic, thresholds []time.Duration, slow []uint64) *dto.Histogram {
	count := h.Count()
	buckets := c.appendCounts(a.classic[:0], h)
	buckets = appendThresholds(buckets, count, thresholds, slow)
	buckets = mergeBuckets(buckets, count)
	a.classic = buckets // reused by the next histogram
	out := &dto.Histogram{
		SampleCount:   a.uint(count),
		SampleSum:     a.float(h.Sum.Seconds()),
		Schema:        &schema,
		ZeroThreshold: &zeroThreshold,
		ZeroCount:     a.uint(h.Zero),
		Bucket:        make([]*dto.Bucket, 0, len(buckets)),
	}
	for _, b := range buckets {
		out.Bucket = append(out.Bucket, a.bucket(b.le, b.count))
	}
	out.PositiveSpan, out.PositiveDelta = spans(h)
	return out
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
