// Package controller is the rollout controller: on the raft leader only,
// every tick it judges each running release's canary on the windows every
// node reports (merged), moves the breaker, and advances the release's
// steps — each decision one raft entry carrying the numbers behind it, so
// a new leader resumes exactly where the old one stopped.
package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/breaker"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/rollout"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/window"
)

// Node is what the controller needs of the cluster node.
type Node interface {
	IsLeader() bool
	FSM() *cluster.FSM
	Apply(ctx context.Context, c cluster.Command) (uint64, error)
	Members(ctx context.Context) ([]cluster.Member, error)
}

// GateRunner runs a step's gates against the canary backends, in order,
// stopping at the first failure.
// service is the release's service (a shadow gate captures its traffic).
type GateRunner func(ctx context.Context, service string, gates []release.Gate, canary []netip.AddrPort) []rollout.GateResult

// Options tune a Controller.
type Options struct {
	// Tick is how often releases are judged and advanced (default 1s).
	Tick  time.Duration
	Gates GateRunner
	Log   *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Notify, if set, receives every release event recorded while this
	// node leads (the controller's decisions and users' actions alike),
	// once; it must not block.
	Notify func(run rollout.Run, e rollout.Event)
}

// Report is what a node sends the leader every second: its window of the
// services that have a running release.
type Report struct {
	At       time.Time                 `json:"at"`
	Services map[string][2]window.Pool `json:"services"`
}

// Controller runs releases.
type Controller struct {
	node Node
	opts Options

	live atomic.Int32 // reachable members, while a rate cap needs it (0: unknown)
	life context.Context

	mu       sync.Mutex
	notified map[string]uint64          // release -> events passed to Notify (nil: not leading)
	sliders  map[string]*breaker.Slider // by service
	gating   map[string]uint64          // release -> run Seq whose gates are running
	analysis map[string]api.Analysis    // release -> latest judgement
}

// New returns a controller of node's releases.
func New(node Node, opts Options) *Controller {
	if opts.Tick <= 0 {
		opts.Tick = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Controller{node: node, opts: opts, sliders: map[string]*breaker.Slider{},
		gating: map[string]uint64{}, analysis: map[string]api.Analysis{}}
}

// Take receives a node's report (JSON of Report); the cluster calls it on
// the leader.
func (c *Controller) Take(node string, data []byte) {
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		c.opts.Log.Warn("a node's report is unreadable", "node", node, "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for svc, pools := range r.Services {
		s, ok := c.sliders[svc]
		if !ok {
			s = breaker.NewSlider(maxWindow)
			c.sliders[svc] = s
		}
		s.Add(node, r.At, pools)
	}
}

// maxWindow bounds what the sliders keep.
const maxWindow = 10 * time.Minute

// Analysis returns the latest judgement of a release on this node (the
// leader), or nil.
func (c *Controller) Analysis(release string) *api.Analysis {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, ok := c.analysis[release]
	if !ok {
		return nil
	}
	return &a
}

// Run judges and advances releases every tick while this node leads.
func (c *Controller) Run(ctx context.Context) {
	c.mu.Lock()
	c.life = ctx // gates started later end with the controller
	c.mu.Unlock()
	go c.watchLive(ctx)
	t := time.NewTicker(c.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.node.IsLeader() {
			c.mu.Lock()
			c.notified = nil // a new term as leader starts from what is there
			c.mu.Unlock()
			continue
		}
		c.Tick(ctx)
		c.notify()
	}
}

// Tick does one round: every active run is judged and advanced.
func (c *Controller) Tick(ctx context.Context) {
	st, _ := c.node.FSM().State()
	now := c.opts.Now()
	c.mu.Lock()
	for _, s := range c.sliders { // nodes that left stop costing memory
		s.Forget(now.Add(-maxWindow))
	}
	c.mu.Unlock()
	for name, run := range st.Runs {
		if !run.Phase.Active() {
			continue
		}
		rel, ok := st.Releases[name]
		if !ok {
			continue
		}
		if err := c.advance(ctx, st, rel, run, now); err != nil {
			c.opts.Log.Warn("rollout: a decision was not recorded; trying again at the next tick", "release", name, "err", err)
		}
	}
}

// lifetime is the context the controller runs in (Background before Run:
// a test driving Tick by hand).
func (c *Controller) lifetime() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.life == nil {
		return context.Background()
	}
	return c.life
}

// watchLive counts the reachable members every tick while this node
// leads and a running release caps the rate: the cap is split over them.
// It runs apart from the ticks, so that a member that does not answer
// delays no decision.
func (c *Controller) watchLive(ctx context.Context) {
	t := time.NewTicker(c.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.node.IsLeader() || !c.rateCapped() {
			c.live.Store(0)
			continue
		}
		mctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ms, err := c.node.Members(mctx)
		cancel()
		if err != nil {
			continue
		}
		live := 0
		for _, m := range ms {
			if m.Reachable {
				live++
			}
		}
		c.live.Store(int32(live))
	}
}

func (c *Controller) rateCapped() bool {
	st, _ := c.node.FSM().State()
	for _, run := range st.Runs {
		if run.Phase.Active() && run.Rate > 0 {
			return true
		}
	}
	return false
}

// notify passes the events recorded since the last call to Notify. The
// first call after becoming leader only takes note of what is there: the
// previous leader announced those.
func (c *Controller) notify() {
	if c.opts.Notify == nil {
		return
	}
	st, _ := c.node.FSM().State()
	c.mu.Lock()
	defer c.mu.Unlock()
	first := c.notified == nil
	if first {
		c.notified = map[string]uint64{}
	}
	for name, run := range st.Runs {
		var total uint64
		for _, n := range run.Counts {
			total += n
		}
		seen, known := c.notified[name]
		c.notified[name] = total
		if first || (!known && total > uint64(len(run.History))) {
			continue
		}
		news := int(total - seen)
		if total < seen { // the release was re-applied: a new run
			news = int(total)
		}
		for _, e := range run.History[max(0, len(run.History)-news):] {
			c.opts.Notify(run, e)
		}
	}
}

// advance makes at most one decision for a run.
func (c *Controller) advance(ctx context.Context, st cluster.State, rel release.Release, run rollout.Run, now time.Time) error {
	if d := c.judge(rel, run, now); d != nil {
		return c.record(ctx, run, *d)
	}
	if live := int(c.live.Load()); run.Phase.Active() && run.Rate > 0 && live > 0 && live != run.LiveNodes {
		out := run
		out.LiveNodes = live
		out.Record(rollout.Event{At: now, Kind: "rate-split", Step: run.Step, Weight: run.StepWeight,
			Numbers: map[string]float64{"live_nodes": float64(live), "rate": float64(run.Rate)},
			Message: fmt.Sprintf("%d live nodes: each admits %d of the %d new canary flows/s", live, (int(run.Rate)+live-1)/live, run.Rate)})
		return c.record(ctx, run, rollout.Decision{Run: out})
	}
	if run.Phase != rollout.Running || run.Breaker.State != breaker.Closed {
		return nil
	}
	d, runGates := rollout.Next(run, rel, now)
	if d != nil {
		return c.record(ctx, run, *d)
	}
	if runGates {
		c.startGates(st, rel, run)
	}
	return nil
}

// judge runs the breaker on the canary's window and returns the decision
// a transition makes, if any. Closed, it judges every tick on the sliding
// window (a breach is caught within a tick); half-open, it judges
// consecutive disjoint windows from the moment it began probing; open, it
// only waits out the cool-down. No window reaches back past the breaker's
// last transition: what happened before is not the current canary's.
func (c *Controller) judge(rel release.Release, run rollout.Run, now time.Time) *rollout.Decision {
	a := rel.Analysis
	b := run.Breaker
	if b.State == "" {
		b.State = breaker.Closed
	}
	from := now.Add(-a.Window)
	due := true
	if b.State == breaker.HalfOpen {
		from = b.Since.Add(time.Duration(b.HealthyWindows) * a.Window)
		due = !now.Before(from.Add(a.Window))
	}
	if from.Before(b.Since) {
		from = b.Since
	}
	c.mu.Lock()
	var pools [2]window.Pool
	if s := c.sliders[run.Service]; s != nil {
		pools = s.Sum(from, now)
	}
	c.mu.Unlock()
	j := breaker.Judge(pools[service.Canary], a)
	sj := breaker.Judge(pools[service.Stable], a) // for comparison only
	c.mu.Lock()
	c.analysis[rel.Name] = api.Analysis{At: now, Responses: j.Responses, P99: j.P99, ErrorRate: j.ErrorRate, Verdict: verdict(j),
		StableResponses: sj.Responses, StableP99: sj.P99, StableErrorRate: sj.ErrorRate}
	c.mu.Unlock()
	if run.Phase != rollout.Running || !due {
		return nil
	}
	next, tr := b.Next(now, j, a.Breaker)
	if tr == breaker.NoChange {
		return nil
	}
	out := run
	out.Breaker = next
	e := rollout.Event{At: now, Step: run.Step, Weight: run.StepWeight, Numbers: map[string]float64{
		"responses": float64(j.Responses), "errors": float64(j.Errors), "error_rate": j.ErrorRate,
		"p99_seconds": j.P99.Seconds(), "slow_share_open": j.SlowOpen, "slow_share_close": j.SlowClose,
		"window_seconds": now.Sub(from).Seconds()}}
	describe := fmt.Sprintf("P99 %v (%.2f%% slower than %v), errors %.2f%% over %d responses",
		j.P99.Round(100*time.Microsecond), 100*j.SlowOpen, a.Breaker.OpenP99Above, 100*j.ErrorRate, j.Responses)
	d := &rollout.Decision{}
	switch tr {
	case breaker.Tripped, breaker.Retripped:
		if rel.OnBreach == release.PauseRelease {
			e.Kind = "breach"
			out.Phase, out.Reason = rollout.Paused, "breaker open: "+describe+" (onBreach: pause)"
			e.Message = out.Reason
		} else {
			var zero service.Weight
			d.Weight, e.Kind, e.Weight = &zero, "rollback", 0
			e.Message = "breaker open: " + describe + ": canary weight 0"
		}
	case breaker.Probing:
		probe := breaker.ProbeWeight(run.StepWeight)
		d.Weight, e.Kind, e.Weight = &probe, "half-open", probe
		e.Message = fmt.Sprintf("cool-down of %v over: half-open, probing at weight %s", a.Breaker.CoolDown, probe)
	case breaker.Recovered:
		w := run.StepWeight
		d.Weight, e.Kind = &w, "close"
		e.Message = fmt.Sprintf("breaker closed after %d healthy windows (last: %s): weight back to %s", max(a.Breaker.CloseWindows, 1), describe, w)
	case breaker.Counted:
		// Recorded so that a new leader counts on from here.
		e.Kind, e.Weight = "healthy-window", breaker.ProbeWeight(run.StepWeight)
		e.Message = fmt.Sprintf("healthy window %d of %d: %s", next.HealthyWindows, a.Breaker.CloseWindows, describe)
	}
	out.Record(e)
	d.Run = out
	return d
}

func verdict(j breaker.Judgement) string {
	switch {
	case !j.Known:
		return "no verdict (" + j.Reason + ")"
	case j.Breach:
		return "breach"
	case j.Healthy:
		return "healthy"
	}
	return "neither breach nor healthy"
}

// record writes a decision through raft, on the run's Seq.
func (c *Controller) record(ctx context.Context, run rollout.Run, d rollout.Decision) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := c.node.Apply(ctx, &cluster.Rollout{Base: run.Seq, Run: d.Run, Weight: d.Weight})
	if err == nil && len(d.Run.History) > 0 {
		e := d.Run.History[len(d.Run.History)-1]
		c.opts.Log.Info("rollout: "+e.Message, "release", run.Release, "kind", e.Kind, "step", e.Step+1, "weight", e.Weight.String())
	}
	return err
}

// startGates runs the current step's gates in the background, once per
// run Seq; the verdict is recorded if the run has not moved meanwhile.
func (c *Controller) startGates(st cluster.State, rel release.Release, run rollout.Run) {
	c.mu.Lock()
	if seq, busy := c.gating[rel.Name]; busy && seq == run.Seq {
		c.mu.Unlock()
		return
	}
	c.gating[rel.Name] = run.Seq
	c.mu.Unlock()
	var canary []netip.AddrPort
	for _, b := range st.Services[run.Service].Canary {
		canary = append(canary, b.Addr)
	}
	gates := rel.Steps[run.Step].Verify
	go func() {
		ctx, cancel := context.WithTimeout(c.lifetime(), 30*time.Minute)
		defer cancel()
		results := c.opts.Gates(ctx, run.Service, gates, canary)
		c.mu.Lock()
		delete(c.gating, rel.Name)
		c.mu.Unlock()
		now := c.opts.Now()
		cur, _ := c.node.FSM().State()
		latest, ok := cur.Runs[rel.Name]
		if !ok || latest.Seq != run.Seq || !c.node.IsLeader() {
			return // the run moved on (paused, aborted, another leader): the verdict is stale
		}
		if err := c.record(ctx, latest, rollout.Verified(latest, results, now)); err != nil {
			c.opts.Log.Warn("rollout: the gates' verdict was not recorded; they run again", "release", rel.Name, "err", err)
		}
	}()
}
