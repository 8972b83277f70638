package shadow

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/graylane/graylane/ctl/cli"
	"github.com/graylane/graylane/ctl/printer"
	"github.com/graylane/graylane/pkg/shadow"
)

// result is what graylanectl shadow prints: the report (its fields at the
// top level: `compared`, `differing`, …) and what it was a report of.
type result struct {
	Service string   `json:"service"`
	From    string   `json:"from"`
	To      string   `json:"to"`      // canary, stable or ADDR:PORT
	Targets []string `json:"targets"` // the addresses replayed to
	// Read is what the capture held.
	Read shadow.ReadStats `json:"read"`
	shadow.Report
	Interrupted bool `json:"interrupted,omitempty"`
	// Noise says how to read the differences against the noise floor.
	Noise string `json:"noise"`
}

// NoiseFloor is the advice every report ends with.
const (
	noiseCanary = "some differences may be the application's own (time, random ids): run the same with --to stable for the noise floor, what stable differs from its own recording"
	noiseStable = "this run against stable is the noise floor: the canary's differences beyond these are the canary's"
)

func newResult(name string, f *flags, to []netip.AddrPort, stats shadow.ReadStats, rep shadow.Report, interrupted bool) result {
	r := result{Service: name, From: f.from, To: f.to, Read: stats, Report: rep, Interrupted: interrupted, Noise: noiseCanary}
	if f.to == "stable" {
		r.Noise = noiseStable
	}
	for _, t := range to {
		r.Targets = append(r.Targets, t.String())
	}
	return r
}

func show(env *cli.Env, r result) error {
	return env.Print(r, func(t *printer.Tab) {
		to := r.To
		if to == "canary" || to == "stable" {
			to += " (" + strings.Join(r.Targets, ", ") + ")"
		}
		t.Line("shadow of %s to %s from %s", r.Service, to, r.From)
		st := r.Read
		t.Line("read %d packets: %d TCP streams (%d cut short, %d not HTTP/1.x), %d HTTP and %d UDP exchanges, %d of them unanswered",
			st.Packets, st.TCPStreams, st.Gaps, st.NotHTTP, st.HTTP, st.UDP, st.Unanswered)
		t.Row("FOUND", "COMPARED", "IDENTICAL", "DIFFERING", "SHARE", "STATUS", "HEADER", "BODY", "ERROR")
		k := r.DifferingByKind
		t.Row(fmt.Sprint(r.Found), fmt.Sprint(r.Compared), fmt.Sprint(r.Identical), fmt.Sprint(r.Differing),
			fmt.Sprintf("%.2f%%", 100*r.DifferingShare()),
			fmt.Sprint(k[shadow.KindStatus]), fmt.Sprint(k[shadow.KindHeader]), fmt.Sprint(k[shadow.KindBody]), fmt.Sprint(k[shadow.KindError]))
		t.Line("skipped: %s", skipped(r.Skipped))
		t.Row("LATENCY", "P50", "P99")
		t.Row(r.To, ms(r.Latency.Target.P50), ms(r.Latency.Target.P99))
		t.Row("recorded", ms(r.Latency.Recorded.P50), ms(r.Latency.Recorded.P99))
		if len(r.Examples) > 0 {
			t.Line("first differences:")
			t.Row("KIND", "REQUEST", "WHERE", "RECORDED", "GOT")
			for _, e := range r.Examples {
				t.Row(string(e.Kind), request(e), e.Where, e.Recorded, e.Got)
			}
		}
		if r.Interrupted {
			t.Line("interrupted: the report covers the requests replayed until then")
		}
		t.Line("noise: %s", r.Noise)
	})
}

// skipped lists the reasons requests were skipped for, with what to do.
func skipped(by map[string]int) string {
	why := map[string]string{
		shadow.SkipMethod:     "by method (--methods names the methods to replay)",
		shadow.SkipUnanswered: "without a recorded response",
		shadow.SkipUpgrade:    "upgraded (CONNECT, 101)",
		shadow.SkipProtocol:   "of the service's other protocol",
	}
	reasons := make([]string, 0, len(by))
	for reason := range by {
		reasons = append(reasons, reason)
	}
	sort.Strings(reasons)
	var parts []string
	for _, reason := range reasons {
		if n := by[reason]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, why[reason]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func request(e shadow.Example) string {
	if e.Protocol == shadow.UDP {
		return "udp from " + e.Client
	}
	return e.Method + " " + e.Target
}

func ms(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}
