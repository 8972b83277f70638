package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/window"
)

// statusWindow is how far back the live numbers of `graylanectl status`
// look.
const statusWindow = 10 * time.Second

// windows keeps a snapshot of the kernel's counts, with the L7 proxy's
// added (l7Signals), every second, for the live numbers of the status and
// for the windows each node reports to the rollout controller.
type windows struct {
	a    *Agent
	mu   sync.Mutex
	ring []window.Snapshot // oldest first, at most statusWindow/s + 1
	// evictions are the flow table's evictions so far at each snapshot
	// of ring (datapath.FlowChurn, as of the last walk).
	evictions []uint64
	// losing are the services whose live connections lost flow entries
	// in the last second (misses): a warning is logged when one starts.
	losing map[string]bool
}

func newWindows(a *Agent) *windows { return &windows{a: a, losing: map[string]bool{}} }

func (w *windows) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := w.a.dp.SetFlowClock(now); err != nil {
				w.a.log.Debug("set the flow clock", "err", err)
			}
			snap, err := window.ReadWith(w.a.dp.View(), w.a.dp.Installed(), w.a.cfg.Node, now, w.a.l7.signals)
			if err != nil {
				w.a.log.Debug("read a window", "err", err)
				continue
			}
			w.mu.Lock()
			var prev window.Snapshot
			if len(w.ring) > 0 {
				prev = w.ring[len(w.ring)-1]
			}
			w.ring = append(w.ring, snap)
			w.evictions = append(w.evictions, w.a.dp.FlowChurn().Evictions)
			if keep := int(statusWindow/time.Second) + 1; len(w.ring) > keep {
				w.ring = w.ring[len(w.ring)-keep:]
				w.evictions = w.evictions[len(w.evictions)-keep:]
			}
			w.mu.Unlock()
			w.warnLosing(prev, snap)
			w.a.report(ctx, prev, snap)
		}
	}
}

// warnLosing logs a warning when a service's live connections start
// finding no flow entry (their entries evicted or expired: each such
// connection is steered by the hash alone and its replies pass
// untranslated), and a note when that stops.
func (w *windows) warnLosing(prev, cur window.Snapshot) {
	if prev.At.IsZero() {
		return
	}
	d := cur.Since(prev)
	for name, pools := range d.Services {
		misses := pools[service.Stable].Misses + pools[service.Canary].Misses
		switch {
		case misses > 0 && !w.losing[name]:
			w.losing[name] = true
			w.a.log.Warn("live connections are losing their flow entries (evicted or expired): raise flowTable or an idle timeout", "service", name, "packets", misses,
				"flowTableEntries", w.a.flows.Load(), "flowTableCapacity", w.a.dp.FlowTableCapacity(), "evictions", w.a.dp.FlowChurn().Evictions)
		case misses == 0 && w.losing[name]:
			delete(w.losing, name)
			w.a.log.Info("live connections no longer lose flow entries", "service", name)
		}
	}
}

// evictionRate is the flow table's evictions per second over the ring.
func (w *windows) evictionRate() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ring) < 2 {
		return 0
	}
	secs := w.ring[len(w.ring)-1].At.Sub(w.ring[0].At).Seconds()
	first, last := w.evictions[0], w.evictions[len(w.evictions)-1]
	if secs <= 0 || last < first {
		return 0
	}
	return float64(last-first) / secs
}

// last returns the window over the ring and its length in seconds.
func (w *windows) last() (window.Snapshot, float64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ring) < 2 {
		return window.Snapshot{}, 0, false
	}
	first, latest := w.ring[0], w.ring[len(w.ring)-1]
	return latest.Since(first), latest.At.Sub(first.At).Seconds(), true
}

// status answers a status query about this node's kernel: for each
// service (or the one named), what the kernel holds and its live numbers.
func (a *Agent) status(name string) (any, error) {
	st, _ := a.node.FSM().State()
	win, secs, haveWindow := a.win.last()
	mirrorProblems := a.dp.MirrorProblems()
	active := a.hub.Active()
	fill, evictions := 0.0, a.win.evictionRate()
	if entries, capacity := a.FlowTable(); capacity > 0 {
		fill = float64(entries) / float64(capacity)
	}
	out := map[string]api.NodeStatus{}
	for _, s := range st.ServiceList() {
		if name != "" && s.Name != name {
			continue
		}
		failed := a.failed.of(s.Name)
		ks, ok, err := a.dp.ReadKernel(s.Frontend())
		if err != nil {
			out[s.Name] = api.NodeStatus{Error: err.Error(), MirrorProblem: mirrorProblems[s.Name]}
			continue
		}
		if !ok {
			out[s.Name] = api.NodeStatus{Error: notApplied(failed, "")}
			continue
		}
		ns := api.NodeStatus{Weight: ks.Weight.String(), MirrorProblem: mirrorProblems[s.Name],
			Mirror: mirrorSummary(s.Mirror), Captures: active[s.Name], FlowTableFill: fill, FlowEvictionRate: evictions,
			Error: notApplied(failed, ks.Weight.String())}
		pools := win.Services[s.Name]
		for _, p := range []service.Pool{service.Stable, service.Canary} {
			ps := api.PoolStatus{Pool: p.String(), Backends: []string{}}
			for _, b := range ks.Backends[p] {
				ps.Backends = append(ps.Backends, b.Addr.String())
			}
			if haveWindow && secs > 0 {
				w := pools[p]
				ps.FlowRate = float64(w.Flows) / secs
				ps.MissRate = float64(w.Misses) / secs
				ns.FlowMissRate += ps.MissRate
				ps.P50 = w.Response.Quantile(0.5)
				ps.P99 = w.Response.Quantile(0.99)
				if n := w.Responses(); n > 0 {
					errs := uint64(0)
					for k := range w.Errors {
						errs += w.Errors[k]
					}
					ps.ErrorRate = float64(errs) / float64(n)
				}
			}
			ns.Pools = append(ns.Pools, ps)
		}
		ns.Match, ns.ByWeight = a.matchStatus(s.Name)
		out[s.Name] = ns
	}
	return out, nil
}

// notApplied is the status error of a service: why the last apply could
// not give it to this node's kernel (failed; "" if it could), and the
// weight the kernel steers it by meanwhile (kernelWeight; "": it is not in
// the kernel).
func notApplied(failed, kernelWeight string) string {
	const retried = "retried at every change and every few seconds"
	switch {
	case failed == "" && kernelWeight != "":
		return ""
	case failed == "":
		return "not in this node's kernel yet"
	case kernelWeight != "":
		return fmt.Sprintf("not applied on this node, whose kernel keeps its previous state (weight %s; %s): %s", kernelWeight, retried, failed)
	default:
		return fmt.Sprintf("not applied on this node, whose kernel does not hold it (%s): %s", retried, failed)
	}
}

// mirrorSummary tells a service's mirroring in a few words: "5% → mirror0",
// "1% → capture", or "" when it mirrors nothing.
func mirrorSummary(m *service.Mirror) string {
	if m == nil || m.Percent == 0 {
		return ""
	}
	return m.Percent.String() + " → " + m.To
}
