package manifest

import (
	"fmt"
	"reflect"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/pkg/release"
)

// releaseDoc is a document of kind CanaryRelease as written; leaves are
// scalars, converted by toRelease so a bad value is reported at its path.
type releaseDoc struct {
	APIVersion scalar         `yaml:"apiVersion"`
	Kind       scalar         `yaml:"kind"`
	Metadata   releaseMetaDoc `yaml:"metadata"`
	Spec       releaseSpecDoc `yaml:"spec"`
}

type releaseMetaDoc struct {
	Name scalar `yaml:"name"`
}

type releaseSpecDoc struct {
	Service  scalar      `yaml:"service"`
	Steps    []stepDoc   `yaml:"steps"`
	Analysis analysisDoc `yaml:"analysis"`
	OnBreach scalar      `yaml:"onBreach"`
}

type stepDoc struct {
	SetWeight scalar    `yaml:"setWeight"`
	SetRate   scalar    `yaml:"setRate"`
	Pause     *pauseDoc `yaml:"pause"`
	Verify    []gateDoc `yaml:"verify"`
}

type pauseDoc struct {
	Duration scalar `yaml:"duration"`
}

type gateDoc struct {
	TCP     *tcpDoc  `yaml:"tcp"`
	HTTP    *httpDoc `yaml:"http"`
	Exec    []scalar `yaml:"exec"`
	Timeout scalar   `yaml:"timeout"`
	Retries scalar   `yaml:"retries"`
}

type tcpDoc struct{}

type httpDoc struct {
	Path         scalar            `yaml:"path"`
	ExpectStatus scalar            `yaml:"expectStatus"`
	ExpectJSON   map[string]scalar `yaml:"expectJSON"`
}

type analysisDoc struct {
	Window      scalar     `yaml:"window"`
	MinRequests scalar     `yaml:"minRequests"`
	Breaker     breakerDoc `yaml:"breaker"`
}

type breakerDoc struct {
	Open     openDoc  `yaml:"open"`
	Close    closeDoc `yaml:"close"`
	CoolDown scalar   `yaml:"coolDown"`
}

type openDoc struct {
	P99Above         scalar `yaml:"p99Above"`
	ErrorRateAtLeast scalar `yaml:"errorRateAtLeast"`
}

type closeDoc struct {
	P99AtMost       scalar `yaml:"p99AtMost"`
	ErrorRateAtMost scalar `yaml:"errorRateAtMost"`
	Windows         scalar `yaml:"windows"`
}

// decodeRelease decodes a document of kind CanaryRelease.
func (d *document) decodeRelease(top *yaml.Node) *release.Release {
	d.check(top, reflect.TypeFor[releaseDoc](), "")
	var doc releaseDoc
	if err := top.Decode(&doc); err != nil {
		d.errs = append(d.errs, &Error{File: d.file, Line: d.start, Err: fmt.Errorf("decode release: %w", err)})
		return nil
	}
	r := d.toRelease(&doc)
	return &r
}

// toRelease converts doc to the model with the defaults of package
// release, reporting every value that does not parse; the rest is
// release.Validate's.
func (d *document) toRelease(doc *releaseDoc) release.Release {
	spec := &doc.Spec
	r := release.Release{Name: doc.Metadata.Name.value, Service: spec.Service.value, OnBreach: release.DefaultOnBreach}
	if spec.OnBreach.set {
		r.OnBreach = release.OnBreach(spec.OnBreach.value)
	}
	for i, sd := range spec.Steps {
		at := fmt.Sprintf("spec.steps[%d]", i)
		var st release.Step
		if sd.SetWeight.set {
			w := d.weight(at+".setWeight", sd.SetWeight.value)
			st.SetWeight = &w
		}
		if sd.SetRate.set {
			n, err := strconv.ParseUint(sd.SetRate.value, 10, 32)
			if err != nil || n == 0 {
				d.failField(at+".setRate", "%q: give new canary flows per second, a whole number from 1", sd.SetRate.value)
				d.bad[at] = true // the step is not judged further: one mistake, one message
			}
			st.SetRate = uint32(n)
		}
		if sd.Pause != nil {
			st.Pause = &release.Pause{}
			if sd.Pause.Duration.set {
				st.Pause.Duration = d.duration(at+".pause.duration", sd.Pause.Duration.value)
			}
		} else if d.present(at + ".pause") {
			st.Pause = &release.Pause{} // `pause:` with nothing: until resumed
		}
		for k, gd := range sd.Verify {
			st.Verify = append(st.Verify, d.gate(fmt.Sprintf("%s.verify[%d]", at, k), gd))
		}
		r.Steps = append(r.Steps, st)
	}
	a, b := &spec.Analysis, &spec.Analysis.Breaker
	r.Analysis = release.Analysis{Window: release.DefaultWindow, MinRequests: release.DefaultMinRequests, Breaker: release.Breaker{
		CloseWindows: release.DefaultCloseWindows, CoolDown: release.DefaultCoolDown}}
	ra, rb := &r.Analysis, &r.Analysis.Breaker
	if a.Window.set {
		ra.Window = d.duration("spec.analysis.window", a.Window.value)
	}
	if a.MinRequests.set {
		n, err := strconv.ParseUint(a.MinRequests.value, 10, 32)
		if err != nil {
			d.failField("spec.analysis.minRequests", "%q: give a whole number of responses (0: always judge)", a.MinRequests.value)
		}
		ra.MinRequests = n
	}
	if b.Open.P99Above.set {
		rb.OpenP99Above = d.duration("spec.analysis.breaker.open.p99Above", b.Open.P99Above.value)
	}
	if b.Open.ErrorRateAtLeast.set {
		rb.OpenErrorRate = d.rate("spec.analysis.breaker.open.errorRateAtLeast", b.Open.ErrorRateAtLeast.value)
	}
	// Close defaults to the open latency and half the open error rate.
	rb.CloseP99AtMost, rb.CloseErrorRate = rb.OpenP99Above, rb.OpenErrorRate/2
	if b.Close.P99AtMost.set {
		rb.CloseP99AtMost = d.duration("spec.analysis.breaker.close.p99AtMost", b.Close.P99AtMost.value)
	}
	if b.Close.ErrorRateAtMost.set {
		rb.CloseErrorRate = d.rate("spec.analysis.breaker.close.errorRateAtMost", b.Close.ErrorRateAtMost.value)
	}
	if b.Close.Windows.set {
		n, err := strconv.Atoi(b.Close.Windows.value)
		if err != nil {
			d.failField("spec.analysis.breaker.close.windows", "%q: give a whole number of windows", b.Close.Windows.value)
		}
		rb.CloseWindows = n
	}
	if b.CoolDown.set {
		rb.CoolDown = d.duration("spec.analysis.breaker.coolDown", b.CoolDown.value)
	}
	return r
}

func (d *document) gate(at string, gd gateDoc) release.Gate {
	g := release.Gate{Timeout: release.DefaultGateTimeout}
	if gd.TCP != nil || d.present(at+".tcp") {
		g.TCP = &release.TCPGate{}
	}
	if h := gd.HTTP; h != nil {
		g.HTTP = &release.HTTPGate{Path: h.Path.value, ExpectStatus: 200}
		if h.ExpectStatus.set {
			n, err := strconv.Atoi(h.ExpectStatus.value)
			if err != nil {
				d.failField(at+".http.expectStatus", "%q is not an HTTP status", h.ExpectStatus.value)
			}
			g.HTTP.ExpectStatus = n
		}
		if len(h.ExpectJSON) > 0 {
			g.HTTP.ExpectJSON = make(map[string]string, len(h.ExpectJSON))
			for path, v := range h.ExpectJSON {
				g.HTTP.ExpectJSON[path] = v.value
			}
		}
	}
	for _, a := range gd.Exec {
		g.Exec = append(g.Exec, a.value)
	}
	if gd.Timeout.set {
		g.Timeout = d.duration(at+".timeout", gd.Timeout.value)
	}
	if gd.Retries.set {
		n, err := strconv.Atoi(gd.Retries.value)
		if err != nil {
			d.failField(at+".retries", "%q: give a whole number of retries", gd.Retries.value)
		}
		g.Retries = n
	}
	return g
}

// present reports whether the field at path was written (even empty).
func (d *document) present(path string) bool {
	_, ok := d.lines[path]
	return ok
}

func (d *document) duration(path, v string) time.Duration {
	t, err := time.ParseDuration(v)
	if err != nil {
		d.failField(path, "%q is not a duration: use one such as 300ms, 60s or 5m", v)
	}
	return t
}

func (d *document) rate(path, v string) float64 {
	r, err := release.ParseRate(v)
	if err != nil {
		d.failField(path, "%v", err)
	}
	return r
}

// releaseOut is a release as Marshal writes it.
func releaseOut(r *release.Release) map[string]any {
	steps := []any{}
	for _, st := range r.Steps {
		m := map[string]any{}
		if st.SetWeight != nil {
			m["setWeight"] = st.SetWeight.String()
		}
		if st.SetRate > 0 {
			m["setRate"] = st.SetRate
		}
		if st.Pause != nil {
			p := map[string]any{}
			if st.Pause.Duration > 0 {
				p["duration"] = st.Pause.Duration.String()
			}
			m["pause"] = p
		}
		var gates []any
		for _, g := range st.Verify {
			gm := map[string]any{"timeout": g.Timeout.String()}
			if g.Retries > 0 {
				gm["retries"] = g.Retries
			}
			switch {
			case g.TCP != nil:
				gm["tcp"] = map[string]any{}
			case g.HTTP != nil:
				h := map[string]any{"path": g.HTTP.Path, "expectStatus": g.HTTP.ExpectStatus}
				if len(g.HTTP.ExpectJSON) > 0 {
					h["expectJSON"] = g.HTTP.ExpectJSON
				}
				gm["http"] = h
			default:
				gm["exec"] = g.Exec
			}
			gates = append(gates, gm)
		}
		if len(gates) > 0 {
			m["verify"] = gates
		}
		steps = append(steps, m)
	}
	b := r.Analysis.Breaker
	return map[string]any{
		"apiVersion": APIVersion,
		"kind":       KindCanaryRelease,
		"metadata":   map[string]any{"name": r.Name},
		"spec": map[string]any{
			"service": r.Service,
			"steps":   steps,
			"analysis": map[string]any{
				"window":      r.Analysis.Window.String(),
				"minRequests": r.Analysis.MinRequests,
				"breaker": map[string]any{
					"open":     map[string]any{"p99Above": b.OpenP99Above.String(), "errorRateAtLeast": release.FormatRate(b.OpenErrorRate)},
					"close":    map[string]any{"p99AtMost": b.CloseP99AtMost.String(), "errorRateAtMost": release.FormatRate(b.CloseErrorRate), "windows": b.CloseWindows},
					"coolDown": b.CoolDown.String(),
				},
			},
			"onBreach": string(r.OnBreach),
		},
	}
}
