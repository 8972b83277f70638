package cluster

// Explain across nodes: a node asks another member why a client's new
// flows go where they go in that member's kernel (POST /cluster/explain),
// and the member answers with its agent's explanation. The asking node
// checked the caller's right to the service; the member trusts it, as it
// trusts any member: members only, since the answer lists a client's live
// flows.

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/graylane/graylane/pkg/api"
)

// ExplainFunc explains, from this node's kernel, why client's (IP or
// IP:PORT, as the API takes it) new flows to service go where they go. An
// *api.Error is answered with its status; any other error is a 500.
type ExplainFunc func(ctx context.Context, service, client string) (api.Explanation, error)

// explainRequest is the body of POST /cluster/explain.
type explainRequest struct {
	Service string `json:"service"`
	Client  string `json:"client"`
}

// explainWait bounds an explain on another member: an explanation is a
// few hundred kernel test runs at most (a port sample, the live flows),
// and a member that is down or cut off must not hold the caller for the
// RPC client's 30 s.
const explainWait = 5 * time.Second

// SetExplain installs what answers explain requests for this node's
// kernel, its own (ExplainOn) and other members'.
func (n *Node) SetExplain(f ExplainFunc) { n.explain.Store(&f) }

// explainer is this node's ExplainFunc, nil before SetExplain.
func (n *Node) explainer() ExplainFunc {
	if f := n.explain.Load(); f != nil {
		return *f
	}
	return nil
}

// rpcExplain answers another member's explain request from this node's
// kernel.
func (n *Node) rpcExplain(ctx context.Context, body []byte) (any, error) {
	var req explainRequest
	if err := decodeWant(body, &req, "explain: want {service, client}", func() bool { return req.Service != "" && req.Client != "" }); err != nil {
		return nil, err
	}
	f := n.explainer()
	if f == nil {
		return nil, rpcErrorf(http.StatusServiceUnavailable, "node %s explains no flows yet: its agent is starting", n.cfg.Node)
	}
	ex, err := f(ctx, req.Service, req.Client)
	var ae *api.Error
	if errors.As(err, &ae) {
		return nil, rpcErrorf(ae.Status, "%s", ae.Message)
	}
	if err != nil {
		return nil, err
	}
	return ex, nil
}

// ExplainOn asks member node why client's new flows to service go where
// they go in its kernel: this node's own ExplainFunc when node is this
// one, else the member's over the cluster port. Failures carry an HTTP
// status (RPCStatus): 404 for a node that is no member (the message lists
// them), 502 for a member that does not answer, 501 for one whose agent
// predates this RPC, else the member's own refusal.
func (n *Node) ExplainOn(ctx context.Context, node, service, client string) (api.Explanation, error) {
	if node == n.cfg.Node {
		f := n.explainer()
		if f == nil {
			return api.Explanation{}, rpcErrorf(http.StatusServiceUnavailable, "node %s explains no flows yet: its agent is starting", node)
		}
		return f(ctx, service, client)
	}
	addr, err := n.explainAddress(node)
	if err != nil {
		return api.Explanation{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, explainWait)
	defer cancel()
	var out api.Explanation
	err = n.call(ctx, addr, "/cluster/explain", explainRequest{Service: service, Client: client}, &out)
	var re *rpcError
	switch {
	case errors.As(err, &re) && re.Status == http.StatusNotFound && re.Message == "404 page not found":
		return api.Explanation{}, rpcErrorf(http.StatusNotImplemented,
			"node %s does not explain for other members: its agent is older than this one (upgrade it, or ask it directly: --server naming its API)", node)
	case errors.As(err, &re):
		return api.Explanation{}, err
	case err != nil:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the cluster port's, said already
		}
		return api.Explanation{}, rpcErrorf(http.StatusBadGateway,
			"node %s (%s) did not answer: %v: it may be down or cut off (graylanectl members shows which members are reachable)", node, addr, err)
	}
	return out, nil
}

// explainAddress is member node's cluster address, or a 404 that names
// the node and lists the members (sorted, as graylanectl members shows
// them).
func (n *Node) explainAddress(node string) (string, error) {
	addr, err := n.memberAddress(node)
	var nf *NotFoundError
	if !errors.As(err, &nf) {
		return addr, err
	}
	names, err := n.MemberNames()
	if err != nil {
		return "", err
	}
	slices.Sort(names)
	return "", rpcErrorf(http.StatusNotFound, "node %q is not a member of the cluster (members: %s)", node, strings.Join(names, ", "))
}
