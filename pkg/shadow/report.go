package shadow

import (
	"slices"
	"time"
)

// Report is a shadow run's result. Its JSON field names are part of
// graylanectl's contract (`compared`, `differing`, …).
type Report struct {
	// Found is how many exchanges the capture held.
	Found int `json:"found"`
	// Compared were replayed and compared: Identical + Differing.
	Compared  int `json:"compared"`
	Identical int `json:"identical"`
	Differing int `json:"differing"`
	// DifferingByKind splits Differing by Kind; every kind is present.
	DifferingByKind map[Kind]int `json:"differingByKind"`
	// Skipped counts the exchanges not replayed by reason (Skip…).
	Skipped map[string]int `json:"skipped"`
	// Latency is of the replies, the target's and the recorded ones, over
	// the exchanges compared that got an answer.
	Latency Latencies `json:"latency"`
	// Examples are the first differences, in the capture's order.
	Examples []Example `json:"examples"`
	// Took is how long the replay ran.
	Took time.Duration `json:"took"`
}

// Latencies are the target's and the recorded latencies.
type Latencies struct {
	Target   Quantiles `json:"target"`
	Recorded Quantiles `json:"recorded"`
}

// Quantiles of a set of latencies (nearest rank); zero if there were none.
type Quantiles struct {
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
}

// Example is one difference.
type Example struct {
	Protocol Protocol `json:"protocol"`
	Method   string   `json:"method,omitempty"`
	Target   string   `json:"target,omitempty"` // the request-target, /path?query
	Client   string   `json:"client"`           // the original client
	To       string   `json:"to"`               // the address replayed to
	Kind     Kind     `json:"kind"`
	// Where is the header's name, the body's first differing JSON path
	// (".db.status", ".items[3]") or byte ("byte 17").
	Where    string `json:"where,omitempty"`
	Recorded string `json:"recorded"`
	Got      string `json:"got"`
}

// DifferingShare is Differing / Compared (0 when nothing was compared).
func (r Report) DifferingShare() float64 {
	if r.Compared == 0 {
		return 0
	}
	return float64(r.Differing) / float64(r.Compared)
}

// newReport sums the outcomes of the exchanges.
func newReport(exchanges []Exchange, outcomes []outcome, examples int, took time.Duration) Report {
	r := Report{Found: len(exchanges), Took: took,
		DifferingByKind: map[Kind]int{KindError: 0, KindStatus: 0, KindHeader: 0, KindBody: 0},
		Skipped:         map[string]int{SkipMethod: 0, SkipUnanswered: 0, SkipUpgrade: 0, SkipProtocol: 0},
		Examples:        []Example{}}
	var target, recorded []time.Duration
	for i, o := range outcomes {
		ex := &exchanges[i]
		switch {
		case o.skipped != "":
			r.Skipped[o.skipped]++
			continue
		case !o.target.IsValid():
			continue // not replayed: the run was interrupted
		}
		r.Compared++
		if o.replied {
			target = append(target, o.latency)
			recorded = append(recorded, ex.Latency)
		}
		if o.diff == nil {
			r.Identical++
			continue
		}
		r.Differing++
		r.DifferingByKind[o.diff.kind]++
		if len(r.Examples) < examples {
			r.Examples = append(r.Examples, Example{Protocol: ex.Protocol, Method: ex.Request.Method, Target: ex.Request.Target,
				Client: ex.Client.String(), To: o.target.String(), Kind: o.diff.kind, Where: o.diff.where,
				Recorded: o.diff.recorded, Got: o.diff.got})
		}
	}
	r.Latency = Latencies{Target: quantiles(target), Recorded: quantiles(recorded)}
	return r
}

func quantiles(d []time.Duration) Quantiles {
	if len(d) == 0 {
		return Quantiles{}
	}
	slices.Sort(d)
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(d))+0.999999) - 1
		return d[min(max(i, 0), len(d)-1)]
	}
	return Quantiles{P50: rank(0.50), P99: rank(0.99)}
}
