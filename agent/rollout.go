package agent

import (
	"context"
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/agent/apiserver"
	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/controller"
	"github.com/graylane/graylane/pkg/gate"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/rollout"
	"github.com/graylane/graylane/pkg/webhook"
	"github.com/graylane/graylane/pkg/window"
)

// The rollout side of the agent: every node measures the services that
// have a running release and reports each second's window to the leader;
// the leader's controller judges and advances the releases; every node
// sets its kernel's latency thresholds to the running releases' breaker
// thresholds, so that "P99 above T" is counted exactly.

// newController makes the controller and wires it to the node.
func (a *Agent) newController() *controller.Controller {
	var targets []webhook.Target
	for _, w := range a.cfg.Webhooks {
		targets = append(targets, webhook.Target{URL: w.URL, Kinds: w.Events})
	}
	a.hooks = webhook.New(targets, webhook.Options{Log: a.log})
	commands := a.gateCommands()
	runGates := func(ctx context.Context, service string, gates []release.Gate, canary []netip.AddrPort) []rollout.GateResult {
		return a.runGates(ctx, service, gates, canary, commands)
	}
	c := controller.New(a.node, controller.Options{Log: a.log, Gates: runGates, Notify: func(run rollout.Run, e rollout.Event) {
		a.hooks.Send(webhook.Event{At: e.At, Node: a.cfg.Node, Release: run.Release, Service: run.Service, Kind: e.Kind,
			Step: e.Step + 1, Weight: e.Weight.String(), Message: e.Message, Numbers: e.Numbers})
	}})
	a.node.SetReportHandler(c.Take)
	a.node.SetAnalyst(c)
	return c
}

// analysis is the leader's latest judgement of a release, asked of the
// leader when this node follows (nil when it cannot be had).
func (a *Agent) analysis(release string) *api.Analysis {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := a.node.AskAnalysis(ctx, release)
	if err != nil {
		a.log.Debug("ask the leader for a release's analysis", "release", release, "err", err)
		return nil
	}
	return out
}

// runGates runs a step's gates from this node (the leader): it is in the
// gateway's network, where the canary backends are reachable. A shadow
// gate captures the service's traffic on every node (shadow.go). Commands
// are the allowlist (gates.commands) as read when the agent started.
func (a *Agent) runGates(ctx context.Context, service string, gates []release.Gate, canary []netip.AddrPort, commands map[string]gate.Command) []rollout.GateResult {
	opts := gate.Options{Commands: commands, Env: a.gateEnv(service, canary), Shadow: func(ctx context.Context, g release.ShadowGate, canary []netip.AddrPort) (gate.ShadowOutcome, error) {
		return a.shadowGate(ctx, service, g, canary)
	}}
	results, _ := gate.RunAll(ctx, gates, canary, opts)
	out := make([]rollout.GateResult, 0, len(results))
	for i, r := range results {
		out = append(out, rollout.GateResult{Name: apiserver.GateName(gates[i]), Pass: r.Pass, Detail: r.Detail, Output: r.Output})
	}
	return out
}

// gateCommands is the allowlist of gate commands, each with its user
// looked up; a command whose user is gone since the config was read is
// left out (a gate naming it fails, saying so) and logged.
func (a *Agent) gateCommands() map[string]gate.Command {
	out := make(map[string]gate.Command, len(a.cfg.Gates.Commands))
	for _, c := range a.cfg.Gates.Commands {
		u, err := c.ResolveUser()
		if err != nil {
			a.log.Error("gate command left out", "command", c.Name, "err", err)
			continue
		}
		out[c.Name] = gate.Command{Argv: slices.Clone(c.Argv), User: &gate.User{Name: u.Name, UID: u.UID, GID: u.GID}, Timeout: c.TimeoutOrZero()}
	}
	return out
}

// gateEnv names, for a gate command, the release running on service, its
// step (from 1) and the canary backends.
func (a *Agent) gateEnv(service string, canary []netip.AddrPort) []string {
	env := []string{"GRAYLANE_SERVICE=" + service}
	st, _ := a.node.FSM().State()
	for _, run := range st.Runs {
		if run.Service == service && run.Phase.Active() {
			env = append(env, "GRAYLANE_RELEASE="+run.Release, "GRAYLANE_STEP="+strconv.Itoa(run.Step+1))
			break
		}
	}
	backends := make([]string, len(canary))
	for i, b := range canary {
		backends[i] = b.String()
	}
	return append(env, "GRAYLANE_CANARY="+strings.Join(backends, ","))
}

// releaseServices returns the services with a running release and the
// kernel thresholds each needs (the breaker's two latencies).
func releaseServices(st cluster.State) map[string][]time.Duration {
	out := map[string][]time.Duration{}
	for name, run := range st.Runs {
		rel, ok := st.Releases[name]
		if !ok || !run.Phase.Active() {
			continue
		}
		b := rel.Analysis.Breaker
		th := []time.Duration{b.OpenP99Above}
		if b.CloseP99AtMost != b.OpenP99Above {
			th = append(th, b.CloseP99AtMost)
		}
		out[run.Service] = th
	}
	return out
}

// nodeRates is this node's share of the running releases' rate caps, by
// service: the cluster-wide rate split evenly (rounded up) over the live
// members the leader counted, or over every member until it has. The count
// is in the run (a rate-split decision), so a change in membership reaches
// every node as a change of the state.
func (a *Agent) nodeRates(st cluster.State) map[string]uint32 {
	want := map[string]uint32{}
	for _, run := range st.Runs {
		n := uint32(run.LiveNodes)
		if n == 0 {
			n = uint32(a.node.Size())
		}
		if run.Phase.Active() && run.Rate > 0 && n > 0 {
			want[run.Service] = (run.Rate + n - 1) / n
		}
	}
	return want
}

// noteRates logs the rate caps an apply gave the kernel that it did not
// have, and keeps them to compare the next apply's with.
func (a *Agent) noteRates(rates map[string]uint32) {
	for svc, r := range rates {
		if a.rates[svc] != r {
			a.log.Info("rate cap of new canary flows on this node", "service", svc, "perSecond", r)
		}
	}
	a.rates = rates
}

// report sends the leader this node's window since prev of the services
// with a running release.
func (a *Agent) report(ctx context.Context, prev, cur window.Snapshot) {
	st, _ := a.node.FSM().State()
	svcs := releaseServices(st)
	if len(svcs) == 0 || prev.At.IsZero() {
		return
	}
	w := cur.Since(prev)
	r := controller.Report{At: cur.At, Services: map[string][2]window.Pool{}}
	for svc := range svcs {
		if pools, ok := w.Services[svc]; ok {
			r.Services[svc] = pools
		}
	}
	data, err := json.Marshal(r)
	if err != nil {
		a.log.Warn("encode a window report", "err", err)
		return
	}
	if err := a.node.Report(ctx, data); err != nil {
		a.log.Debug("report a window to the leader", "err", err)
	}
}
