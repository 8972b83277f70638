package exporter

import (
	"bytes"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/graylane/graylane/pkg/histogram"
)

// TestWriteTextMatchesExpfmt: the lean text writer says what expfmt's
// encoder says: both parse back to the same families.
func TestWriteTextMatchesExpfmt(t *testing.T) {
	a := newArena(16)
	var h histogram.Histogram
	h.Counts[5] = 3
	h.Counts[160] = 7
	h.Zero = 1
	h.Sum = 12345
	svc := label("service", `we"ird\name`+"\n")
	fams := []*dto.MetricFamily{
		{Name: proto.String("graylane_flows_total"), Help: proto.String("help with \\ and\nnewline"), Type: dto.MetricType_COUNTER.Enum(),
			Metric: []*dto.Metric{a.counter([]*dto.LabelPair{label("node", "n1"), svc}, 42)}},
		{Name: proto.String("graylane_canary_weight_ratio"), Help: proto.String("g"), Type: dto.MetricType_GAUGE.Enum(),
			Metric: []*dto.Metric{gauge([]*dto.LabelPair{label("node", "n1")}, 0.05)}},
		{Name: proto.String("graylane_response_duration_seconds"), Help: proto.String("h"), Type: dto.MetricType_HISTOGRAM.Enum(),
			Metric: []*dto.Metric{{Label: []*dto.LabelPair{label("node", "n1")}, Histogram: a.histogram(&h, mustClassic(t, DefaultClassicBuckets()), nil, nil)}}},
	}
	var ours, theirs bytes.Buffer
	if err := writeText(&ours, fams); err != nil {
		t.Fatal(err)
	}
	enc := expfmt.NewEncoder(&theirs, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	parse := func(b []byte) map[string]*dto.MetricFamily {
		p := expfmt.NewTextParser(model.UTF8Validation)
		m, err := p.TextToMetricFamilies(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%v in:\n%s", err, b)
		}
		return m
	}
	got, want := parse(ours.Bytes()), parse(theirs.Bytes())
	for name, w := range want {
		if !proto.Equal(got[name], w) {
			t.Errorf("%s differs:\nours:\n%s\nexpfmt:\n%s", name, ours.String(), theirs.String())
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d families, expfmt %d", len(got), len(want))
	}
}
