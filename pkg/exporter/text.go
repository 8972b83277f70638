package exporter

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// writeText writes families in the Prometheus text format (0.0.4). It does
// what expfmt's encoder does for the families this package builds, without
// its per-sample name validation and escaping passes: at a thousand
// services those were half of a text scrape's CPU. Names and label names
// are this package's own constants; label values are escaped.
func writeText(w io.Writer, families []*dto.MetricFamily) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	num := make([]byte, 0, 32)
	for _, f := range families {
		name := f.GetName()
		bw.WriteString("# HELP ")
		bw.WriteString(name)
		bw.WriteByte(' ')
		helpEscaper.WriteString(bw, f.GetHelp())
		bw.WriteString("\n# TYPE ")
		bw.WriteString(name)
		bw.WriteByte(' ')
		bw.WriteString(strings.ToLower(f.GetType().String()))
		bw.WriteByte('\n')
		for _, m := range f.Metric {
			switch {
			case m.Counter != nil:
				sample(bw, &num, name, "", m.Label, "", 0, m.Counter.GetValue())
			case m.Gauge != nil:
				sample(bw, &num, name, "", m.Label, "", 0, m.Gauge.GetValue())
			case m.Histogram != nil:
				h := m.Histogram
				for _, b := range h.Bucket {
					sample(bw, &num, name, "_bucket", m.Label, "le", b.GetUpperBound(), float64(b.GetCumulativeCount()))
				}
				sample(bw, &num, name, "_bucket", m.Label, "le", math.Inf(1), float64(h.GetSampleCount()))
				sample(bw, &num, name, "_sum", m.Label, "", 0, h.GetSampleSum())
				sample(bw, &num, name, "_count", m.Label, "", 0, float64(h.GetSampleCount()))
			}
		}
	}
	return bw.Flush()
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	valueEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// sample writes one line: name+suffix{labels[,extra="x"]} value.
func sample(bw *bufio.Writer, num *[]byte, name, suffix string, labels []*dto.LabelPair, extra string, extraValue, v float64) {
	bw.WriteString(name)
	bw.WriteString(suffix)
	if len(labels) > 0 || extra != "" {
		bw.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				bw.WriteByte(',')
			}
			bw.WriteString(l.GetName())
			bw.WriteString(`="`)
			valueEscaper.WriteString(bw, l.GetValue())
			bw.WriteByte('"')
		}
		if extra != "" {
			if len(labels) > 0 {
				bw.WriteByte(',')
			}
			bw.WriteString(extra)
			bw.WriteString(`="`)
			*num = appendFloat((*num)[:0], extraValue)
			bw.Write(*num)
			bw.WriteByte('"')
		}
		bw.WriteByte('}')
	}
	bw.WriteByte(' ')
	*num = appendFloat((*num)[:0], v)
	bw.Write(*num)
	bw.WriteByte('\n')
}

// appendFloat formats like the text format: +Inf, -Inf, NaN, else the
// shortest representation.
func appendFloat(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
