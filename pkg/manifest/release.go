package manifest

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
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
	TCP     *tcpDoc    `yaml:"tcp"`
	HTTP    *httpDoc   `yaml:"http"`
	Command scalar     `yaml:"command"`
	Exec    []scalar   `yaml:"exec"`
	Shadow  *shadowDoc `yaml:"shadow"`
	Timeout scalar     `yaml:"timeout"`
	Retries scalar     `yaml:"retries"`
}

type tcpDoc struct{}

type shadowDoc struct {
	From         scalar `yaml:"from"`
	MaxDiffering scalar `yaml:"maxDiffering"`
	Duration     scalar `yaml:"duration"`
	Percent      scalar `yaml:"percent"`
}

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
			n, err := strconv.ParseUint(sd.SetRate.value, 10, 64)
			if err != nil || n == 0 || n > release.MaxRate {
				d.failField(at+".setRate", "%q: give new canary flows per second, a whole number from 1 to %d", sd.SetRate.value, release.MaxRate)
				n = 1 // the step still sets a rate: no second message about the step
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
		n, err := strconv.ParseUint(a.MinRequests.value, 10, 64)
		if err != nil {
			d.failField("spec.analysis.minRequests", "%q: give a whole number of responses, 0 (always judge) to %d", a.MinRequests.value, release.MaxMinRequests)
		}
		ra.MinRequests = n
	}
	// The open thresholds have no default: the SLO is the user's.
	if b.Open.P99Above.set {
		rb.OpenP99Above = d.duration("spec.analysis.breaker.open.p99Above", b.Open.P99Above.value)
	} else {
		d.failField("spec.analysis.breaker.open.p99Above", "is required: the P99 above which (with the error rate) the canary is pulled back, such as 800ms")
	}
	if b.Open.ErrorRateAtLeast.set {
		rb.OpenErrorRate = d.rate("spec.analysis.breaker.open.errorRateAtLeast", b.Open.ErrorRateAtLeast.value)
	} else {
		d.failField("spec.analysis.breaker.open.errorRateAtLeast", "is required: the error rate at least which (with the P99) the canary is pulled back, such as 3.5%%")
	}
	// Close defaults to the open latency and half the open error rate.
	rb.CloseP99AtMost, rb.CloseErrorRate = rb.OpenP99Above, release.DefaultCloseErrorRate(rb.OpenErrorRate)
	if b.Close.P99AtMost.set {
		rb.CloseP99AtMost = d.duration("spec.analysis.breaker.close.p99AtMost", b.Close.P99AtMost.value)
	}
	if b.Close.ErrorRateAtMost.set {
		rb.CloseErrorRate = d.rate("spec.analysis.breaker.close.errorRateAtMost", b.Close.ErrorRateAtMost.value)
	}
	if b.Close.Windows.set {
		n, err := strconv.Atoi(b.Close.Windows.value)
		if err != nil {
			d.failField("spec.analysis.breaker.close.windows", "%q: give a whole number of healthy windows in a row, 1 to %d", b.Close.Windows.value, release.MaxCloseWin)
		}
		rb.CloseWindows = n
	}
	if b.CoolDown.set {
		rb.CoolDown = d.duration("spec.analysis.breaker.coolDown", b.CoolDown.value)
	}
	return r
}

// gate converts one gate. A check written with an empty value ("tcp:",
// "http:") is still that check, so that its own fields are what is
// reported missing.
func (d *document) gate(at string, gd gateDoc) release.Gate {
	g := release.Gate{Timeout: release.DefaultGateTimeout}
	if gd.TCP != nil || d.present(at+".tcp") {
		g.TCP = &release.TCPGate{}
	}
	h := gd.HTTP
	if h == nil && d.present(at+".http") {
		h = &httpDoc{}
	}
	if h != nil {
		g.HTTP = &release.HTTPGate{Path: h.Path.value, ExpectStatus: release.DefaultExpectStatus}
		if h.ExpectStatus.set {
			n, err := strconv.Atoi(h.ExpectStatus.value)
			if err != nil {
				d.failField(at+".http.expectStatus", "%q is not an HTTP status: give 100 to 599 (default %d)", h.ExpectStatus.value, release.DefaultExpectStatus)
			}
			g.HTTP.ExpectStatus = n
		}
		if len(h.ExpectJSON) > 0 {
			g.HTTP.ExpectJSON = make(map[string]string, len(h.ExpectJSON))
			for _, path := range slices.Sorted(maps.Keys(h.ExpectJSON)) { // a stable order of messages
				v := h.ExpectJSON[path]
				if !v.set {
					d.failField(fmt.Sprintf("%s.http.expectJSON[%q]", at, path),
						`has no value: give the text the field must have, such as UP ("null" for a JSON null, "" for an empty string)`)
				}
				g.HTTP.ExpectJSON[path] = v.value
			}
		}
	}
	if gd.Command.set {
		g.Command = gd.Command.value
	} else if d.present(at + ".command") {
		d.failField(at+".command", "is empty: give the name of a command of the agent's gates.commands, such as smoke")
		g.Command = "-" // the gate still names a command: no second message about the gate
	}
	for i, a := range gd.Exec {
		if !a.set {
			d.failField(fmt.Sprintf("%s.exec[%d]", at, i), `is empty: give a command or an argument ("" for an empty argument)`)
		}
		g.Exec = append(g.Exec, a.value)
	}
	if len(gd.Exec) == 0 && d.present(at+".exec") {
		d.failField(at+".exec", `is empty: give the command and its arguments, such as [sh, -c, "curl -sf http://10.2.0.11:8080/healthz"]`)
		g.Exec = []string{"-"} // the gate still runs a command: no second message about the gate
	}
	d.shadowGate(at, gd, &g)
	if gd.Timeout.set {
		g.Timeout = d.duration(at+".timeout", gd.Timeout.value)
	}
	if gd.Retries.set {
		n, err := strconv.Atoi(gd.Retries.value)
		if err != nil {
			d.failField(at+".retries", "%q: give a whole number of retries, 0 to %d", gd.Retries.value, release.MaxRetries)
		}
		g.Retries = n
	}
	return g
}

// present reports whether the field at path was written (even empty).
// shadowGate reads a shadow gate, if gd has one; its default timeout is
// twice its capture and a minute more, to replay what it captured.
func (d *document) shadowGate(at string, gd gateDoc, g *release.Gate) {
	sd := gd.Shadow
	if sd == nil && d.present(at+".shadow") {
		sd = &shadowDoc{}
	}
	if sd == nil {
		return
	}
	sg := &release.ShadowGate{From: sd.From.value, Duration: release.DefaultShadowDuration, Percent: release.DefaultShadowPercent}
	if sd.MaxDiffering.set {
		sg.MaxDiffering = d.weight(at+".shadow.maxDiffering", sd.MaxDiffering.value)
	}
	if sd.Duration.set {
		sg.Duration = d.duration(at+".shadow.duration", sd.Duration.value)
	}
	if sd.Percent.set {
		sg.Percent = d.weight(at+".shadow.percent", sd.Percent.value)
	}
	g.Shadow = sg
	g.Timeout = 2*sg.Duration + time.Minute
}

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

// The canonical form of a release, fields in the contract's order.
type (
	releaseOutDoc struct {
		APIVersion string         `yaml:"apiVersion"`
		Kind       string         `yaml:"kind"`
		Metadata   releaseMetaOut `yaml:"metadata"`
		Spec       releaseSpecOut `yaml:"spec"`
	}
	releaseMetaOut struct {
		Name string `yaml:"name"`
	}
	releaseSpecOut struct {
		Service  string      `yaml:"service"`
		Steps    []stepOut   `yaml:"steps"`
		Analysis analysisOut `yaml:"analysis"`
		OnBreach string      `yaml:"onBreach"`
	}
	stepOut struct {
		SetWeight string    `yaml:"setWeight,omitempty"`
		SetRate   uint32    `yaml:"setRate,omitempty"`
		Pause     *pauseOut `yaml:"pause,omitempty,flow"`
		Verify    []gateOut `yaml:"verify,omitempty"`
	}
	pauseOut struct {
		Duration string `yaml:"duration,omitempty"`
	}
	gateOut struct {
		TCP     *struct{}  `yaml:"tcp,omitempty,flow"`
		HTTP    *httpOut   `yaml:"http,omitempty"`
		Command string     `yaml:"command,omitempty"`
		Exec    []string   `yaml:"exec,omitempty,flow"`
		Shadow  *shadowOut `yaml:"shadow,omitempty,flow"`
		Timeout string     `yaml:"timeout"`
		Retries int        `yaml:"retries,omitempty"`
	}
	shadowOut struct {
		From         string `yaml:"from"`
		MaxDiffering string `yaml:"maxDiffering"`
		Duration     string `yaml:"duration"`
		Percent      string `yaml:"percent"`
	}
	httpOut struct {
		Path         string            `yaml:"path"`
		ExpectStatus int               `yaml:"expectStatus"`
		ExpectJSON   map[string]string `yaml:"expectJSON,omitempty"`
	}
	analysisOut struct {
		Window      string     `yaml:"window"`
		MinRequests uint64     `yaml:"minRequests"`
		Breaker     breakerOut `yaml:"breaker"`
	}
	breakerOut struct {
		Open     openOut  `yaml:"open,flow"`
		Close    closeOut `yaml:"close,flow"`
		CoolDown string   `yaml:"coolDown"`
	}
	openOut struct {
		P99Above         string `yaml:"p99Above"`
		ErrorRateAtLeast string `yaml:"errorRateAtLeast"`
	}
	closeOut struct {
		P99AtMost       string `yaml:"p99AtMost"`
		ErrorRateAtMost string `yaml:"errorRateAtMost"`
		Windows         int    `yaml:"windows"`
	}
)

// releaseOut is a release as MarshalAll writes it: every default spelled
// out, a pause of 0 written as pause: {} (until resumed).
func releaseOut(r *release.Release) releaseOutDoc {
	steps := make([]stepOut, 0, len(r.Steps))
	for _, st := range r.Steps {
		var so stepOut
		if st.SetWeight != nil {
			so.SetWeight = st.SetWeight.String()
		}
		so.SetRate = st.SetRate
		if st.Pause != nil {
			so.Pause = &pauseOut{}
			if st.Pause.Duration > 0 {
				so.Pause.Duration = st.Pause.Duration.String()
			}
		}
		for _, g := range st.Verify {
			gate := gateOut{Timeout: g.Timeout.String(), Retries: g.Retries}
			switch {
			case g.TCP != nil:
				gate.TCP = &struct{}{}
			case g.HTTP != nil:
				gate.HTTP = &httpOut{Path: g.HTTP.Path, ExpectStatus: g.HTTP.ExpectStatus, ExpectJSON: g.HTTP.ExpectJSON}
			case g.Command != "":
				gate.Command = g.Command
			case g.Shadow != nil:
				sg := g.Shadow
				gate.Shadow = &shadowOut{From: sg.From, MaxDiffering: sg.MaxDiffering.String(), Duration: sg.Duration.String(), Percent: sg.Percent.String()}
			default:
				gate.Exec = g.Exec
			}
			so.Verify = append(so.Verify, gate)
		}
		steps = append(steps, so)
	}
	a, b := &r.Analysis, &r.Analysis.Breaker
	return releaseOutDoc{
		APIVersion: APIVersion,
		Kind:       KindCanaryRelease,
		Metadata:   releaseMetaOut{Name: r.Name},
		Spec: releaseSpecOut{
			Service: r.Service,
			Steps:   steps,
			Analysis: analysisOut{
				Window:      a.Window.String(),
				MinRequests: a.MinRequests,
				Breaker: breakerOut{
					Open:     openOut{P99Above: b.OpenP99Above.String(), ErrorRateAtLeast: release.FormatRate(b.OpenErrorRate)},
					Close:    closeOut{P99AtMost: b.CloseP99AtMost.String(), ErrorRateAtMost: release.FormatRate(b.CloseErrorRate), Windows: b.CloseWindows},
					CoolDown: b.CoolDown.String(),
				},
			},
			OnBreach: string(r.OnBreach),
		},
	}
}
