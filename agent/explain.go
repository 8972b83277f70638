package agent

// graylanectl explain: why a client's new flows go where they go, from
// a node's kernel (datapath.Explain runs the data path's own decision
// code on its maps), with the client's live flows and why they may hold
// other backends. Another member's kernel is asked through the cluster
// (cluster.Node.ExplainOn), and this node answers the other members'.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/graylane/graylane/agent/apiserver"
	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// Ports sampled for a client of a service keyed by the 5-tuple when no
// port is given: spread over Linux's default ephemeral range, the first
// is the one explained in full.
const (
	samplePortFirst = 32768
	samplePortLast  = 60999
	samplePorts     = 256
	// explainLiveFlows bounds the live flows listed (all are counted).
	explainLiveFlows = 100
)

// Explain answers an explain request (apiserver.Explainer): from this
// node's kernel, or from another member's through the cluster. The API
// checked the token against the service's tenant here; the member trusts
// this node's check.
func (a *Agent) Explain(ctx context.Context, q apiserver.ExplainQuery) (api.Explanation, error) {
	if q.Node == "" || q.Node == a.cfg.Node {
		return a.explainHere(q)
	}
	client := q.Client.Addr().String()
	if q.HasPort {
		client = q.Client.String()
	}
	ex, err := a.node.ExplainOn(ctx, q.Node, q.Service.Name, client)
	if status := cluster.RPCStatus(err); status != 0 {
		return api.Explanation{}, apiErr(status, "%s", err.Error())
	}
	if err != nil {
		return api.Explanation{}, fmt.Errorf("explain service %q on node %s: %w", q.Service.Name, q.Node, err)
	}
	return ex, nil
}

// serveExplain answers another member's explain request from this node's
// kernel (cluster.ExplainFunc): the service as this node's state holds
// it, the client checked as the API checks it.
func (a *Agent) serveExplain(_ context.Context, name, client string) (api.Explanation, error) {
	st, _ := a.node.FSM().State()
	svc, ok := st.Services[name]
	if !ok {
		return api.Explanation{}, apiErr(http.StatusNotFound, "node %s: service %q does not exist in its state yet (it may lag the leader: try again)", a.cfg.Node, name)
	}
	ap, hasPort, err := apiserver.ParseExplainClient(client, svc)
	if err != nil {
		return api.Explanation{}, err
	}
	return a.explainHere(apiserver.ExplainQuery{Service: svc, Client: ap, HasPort: hasPort, Node: a.cfg.Node})
}

// explainHere explains q from this node's kernel.
func (a *Agent) explainHere(q apiserver.ExplainQuery) (api.Explanation, error) {
	svc := q.Service
	client := q.Client
	var ports *api.PortSample
	if svc.Key == service.KeyFlow && !q.HasPort {
		var err error
		if ports, err = a.samplePorts(svc.Name, client.Addr()); err != nil {
			return api.Explanation{}, a.explainErr(svc.Name, err)
		}
		client = netip.AddrPortFrom(client.Addr(), ports.Port)
	}
	ex, err := a.dp.Explain(svc.Name, client)
	if err != nil {
		return api.Explanation{}, a.explainErr(svc.Name, err)
	}
	out := explanationOf(a.cfg.Node, svc, ex)
	out.Ports = ports
	out.Why = explainWhy(svc, ex, q.HasPort, ports)
	if ex.L7 {
		out.L7 = true
		out.Why = append(a.l7Why(svc), out.Why...)
	}
	if out.LiveFlows, out.LiveFlowsTotal, err = a.liveFlows(svc, client.Addr(), ex); err != nil {
		return api.Explanation{}, a.explainErr(svc.Name, err)
	}
	return out, nil
}

// explainErr turns the data path's refusals into API errors.
func (a *Agent) explainErr(name string, err error) error {
	switch {
	case errors.Is(err, datapath.ErrNotInstalled):
		return apiErr(http.StatusConflict, "node %s: service %q is not in its kernel yet", a.cfg.Node, name)
	case errors.Is(err, datapath.ErrNoBackend):
		return apiErr(http.StatusConflict, "node %s: service %q: %v", a.cfg.Node, name, err)
	}
	return fmt.Errorf("explain service %q on node %s: %w", name, a.cfg.Node, err)
}

// samplePorts asks the kernel about samplePorts source ports of addr,
// for a service keyed by the 5-tuple: how they split.
func (a *Agent) samplePorts(name string, addr netip.Addr) (*api.PortSample, error) {
	ps := &api.PortSample{Port: samplePortFirst, Sampled: samplePorts}
	step := (samplePortLast - samplePortFirst) / (samplePorts - 1)
	for i := range samplePorts {
		ex, err := a.dp.Explain(name, netip.AddrPortFrom(addr, uint16(samplePortFirst+i*step)))
		if err != nil {
			return nil, err
		}
		if ex.Pool == service.Canary {
			ps.Canary++
		}
	}
	return ps, nil
}

// explanationOf is the API's form of the kernel's answer.
func explanationOf(node string, svc service.Service, ex datapath.Explanation) api.Explanation {
	out := api.Explanation{Node: node, Service: svc.Name, Client: ex.Client.Addr().String(), Key: ex.Key.String(),
		Pool: ex.Pool.String(), Reason: string(ex.Reason), Bucket: ex.Bucket, Weight: uint32(ex.Weight),
		WeightPercent: ex.Weight.String(), Backend: ex.Backend.String(), Slot: ex.Slot, LiveFlows: []api.LiveFlow{}}
	if ex.Key == service.KeyFlow {
		out.Client = ex.Client.String()
	}
	if ex.Pin != nil {
		out.Pin = &api.Pin{Prefix: ex.Pin.Prefix.String(), Pool: ex.Pin.Pool.String()}
	}
	if ex.Rate != nil {
		out.Rate = &api.RateState{PerSecond: ex.Rate.PerSec, Burst: ex.Rate.Burst, Tokens: ex.Rate.Tokens,
			Eligible: ex.Reason == datapath.ReasonRate}
	}
	return out
}

// explainWhy says the answer in words, a sentence a line.
func explainWhy(svc service.Service, ex datapath.Explanation, hasPort bool, ports *api.PortSample) []string {
	var why []string
	switch svc.Key {
	case service.KeyClient:
		why = append(why, "the service hashes the client address: every connection of this client has this bucket (its port does not matter)")
	case service.KeyGTPUInner:
		why = append(why, "the service hashes the UE address inside GTP-U: every flow of this UE has this bucket, whichever base station carries it")
	default:
		if hasPort {
			why = append(why, fmt.Sprintf("the service hashes the 5-tuple: this answer is for source port %d; the client's other ports hash to other buckets", ex.Client.Port()))
		} else {
			why = append(why, fmt.Sprintf("the service hashes the 5-tuple and no port was given: explained for source port %d; of %d source ports sampled over %d-%d, %d go to canary (give --client IP:PORT for one connection)",
				ports.Port, ports.Sampled, samplePortFirst, samplePortLast, ports.Canary))
		}
	}
	why = append(why, reasonWhy(ex)...)
	if ex.Pool != ex.Chosen && ex.Reason != datapath.ReasonRate {
		why = append(why, fmt.Sprintf("the %s pool has no backends on this node: new flows go to %s", ex.Chosen, ex.Pool))
	}
	why = append(why, fmt.Sprintf("the %s pool's Maglev table gives slot %d backend %s (%d of %d)",
		ex.Pool, ex.Slot, ex.Backend, ex.BackendIndex+1, ex.Backends))
	return why
}

// reasonWhy says what chose the pool.
func reasonWhy(ex datapath.Explanation) []string {
	cmp := func() string {
		if ex.Bucket < uint32(ex.Weight) {
			return fmt.Sprintf("bucket %d < weight %d (%s)", ex.Bucket, ex.Weight, ex.Weight)
		}
		return fmt.Sprintf("bucket %d >= weight %d (%s)", ex.Bucket, ex.Weight, ex.Weight)
	}
	switch ex.Reason {
	case datapath.ReasonPin:
		pin := "a pin"
		if ex.Pin != nil {
			pin = "pin " + ex.Pin.Prefix.String()
		}
		return []string{fmt.Sprintf("%s sends the client to %s (a pin beats the weight; %s)", pin, ex.Chosen, cmp())}
	case datapath.ReasonRate:
		out := []string{fmt.Sprintf("%s makes the client eligible for the canary; the rate cap (%d new canary flows/s on this node, burst %d) decides each new flow by a token",
			cmp(), ex.Rate.PerSec, ex.Rate.Burst)}
		if ex.Pool == service.Canary {
			return append(out, fmt.Sprintf("%.2f tokens now: the next new flow goes to canary", ex.Rate.Tokens))
		}
		return append(out, fmt.Sprintf("%.2f tokens now, less than one: the next new flow goes to stable", ex.Rate.Tokens))
	}
	out := []string{fmt.Sprintf("%s: %s", cmp(), ex.Chosen)}
	if ex.Rate != nil {
		out = append(out, fmt.Sprintf("the rate cap (%d new canary flows/s) does not apply: the bucket does not make the client eligible", ex.Rate.PerSec))
	}
	return out
}

// liveFlows lists addr's live flows of svc, each with what a new flow
// with its key would get now and why the two differ.
func (a *Agent) liveFlows(svc service.Service, addr netip.Addr, ex datapath.Explanation) ([]api.LiveFlow, int, error) {
	flows, total, err := a.dp.Flows(svc.Name, addr, explainLiveFlows)
	if err != nil {
		return nil, 0, err
	}
	out := make([]api.LiveFlow, 0, len(flows))
	for _, f := range flows {
		lf := api.LiveFlow{Client: f.Client.String(), Backend: f.Backend.String(), Pool: f.Pool.String(), State: f.State}
		now := ex
		if svc.Key == service.KeyFlow && f.Client != ex.Client {
			if now, err = a.dp.Explain(svc.Name, f.Client); err != nil {
				return nil, 0, err
			}
		}
		lf.NewBackend, lf.NewPool = now.Backend.String(), now.Pool.String()
		lf.Why = liveFlowWhy(f, now)
		out = append(out, lf)
	}
	return out, total, nil
}

// liveFlowWhy says why a live flow holds the backend it holds.
func liveFlowWhy(f datapath.Flow, now datapath.Explanation) string {
	switch {
	case f.Backend == now.Backend:
		return "as a new flow with its key would now"
	case f.Pool != now.Pool && now.Reason == datapath.ReasonRate:
		return fmt.Sprintf("opened when a rate token decided otherwise (or at another weight or pins): a new flow with its key would now go to %s %s; a live flow keeps its backend", now.Pool, now.Backend)
	case f.Pool != now.Pool:
		return fmt.Sprintf("opened at another weight or pins: a new flow with its key would now go to %s %s; a live flow keeps its backend", now.Pool, now.Backend)
	}
	return fmt.Sprintf("opened under an earlier backend set of the %s pool: a new flow with its key would now go to %s; a live flow keeps its backend", f.Pool, now.Backend)
}

// l7Why says how an L7 service's connections are decided, with each
// match rule and its hits on this node; the kernel's answer that follows
// is for a connection no rule matches.
func (a *Agent) l7Why(svc service.Service) []string {
	why := []string{datapath.L7Reason}
	hits, _ := a.l7.signals.ruleHits(svc.Name, 0)
	for i, r := range svc.Match {
		line := fmt.Sprintf("rule %d: %s -> %s", i, describeRule(r), r.Pool)
		if i < len(hits) {
			line += fmt.Sprintf(" (%d connections here: %d to stable, %d to canary)", hits[i][0]+hits[i][1], hits[i][0], hits[i][1])
		}
		why = append(why, line)
	}
	return append(why, "a connection whose first request matches no rule:")
}
