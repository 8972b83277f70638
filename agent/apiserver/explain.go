package apiserver

import (
	"context"
	"net/http"
	"net/netip"

	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// Explainer says why a client's new flows go where they go, from a node's
// kernel. The flow lister answers explain requests when it is one too (the
// agent is): both read the same kernel, so one setter installs both.
type Explainer interface {
	Explain(ctx context.Context, q ExplainQuery) (api.Explanation, error)
}

// ExplainQuery is a checked explain request.
type ExplainQuery struct {
	Service service.Service
	// Client is the client's address and, if HasPort, its source port.
	Client  netip.AddrPort
	HasPort bool
	// Node is the node whose kernel is asked ("": this one); the
	// explainer asks another member through the cluster.
	Node string
}

// explain answers GET /v1/services/{name}/explain?client=IP[:PORT]
// [&node=NODE] (admin or the service's tenant, checked here: a member
// asked for its kernel's answer trusts this node's check).
func (s *Server) explain(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	svc, err := s.lookup(r, id)
	if err != nil {
		return nil, err
	}
	q, err := explainQuery(r, svc)
	if err != nil {
		return nil, err
	}
	ex, ok := s.flows.(Explainer)
	if !ok {
		return nil, apiError(http.StatusServiceUnavailable, "%s", "this agent explains no flows")
	}
	return ex.Explain(r.Context(), q)
}

// explainQuery checks an explain request's parameters: each error names
// the parameter.
func explainQuery(r *http.Request, svc service.Service) (ExplainQuery, error) {
	q := ExplainQuery{Service: svc}
	params := r.URL.Query()
	for k := range params {
		if k != "client" && k != "node" {
			return q, apiError(http.StatusBadRequest, "%s: no such explain parameter (client, node)", k)
		}
	}
	var err error
	if q.Client, q.HasPort, err = ParseExplainClient(params.Get("client"), svc); err != nil {
		return q, err
	}
	if params.Has("node") {
		if q.Node = params.Get("node"); q.Node == "" {
			return q, apiError(http.StatusBadRequest, "%s", "node: give a node's name")
		}
	}
	return q, nil
}

// ParseExplainClient checks an explain request's client, v (IP or
// IP:PORT), for svc: the address, unmapped, and whether v gave a port. An
// error is an *api.Error (400) that names the parameter. A member asked
// for another's explain checks the client again with it.
func ParseExplainClient(v string, svc service.Service) (netip.AddrPort, bool, error) {
	var client netip.AddrPort
	hasPort := false
	switch ap, perr := netip.ParseAddrPort(v); {
	case v == "":
		return client, false, apiError(http.StatusBadRequest, "%s", "client: required: give the client's address, IP or IP:PORT, such as 10.9.0.7 or 10.9.0.7:51234")
	case perr == nil:
		if ap.Port() == 0 {
			return client, false, apiError(http.StatusBadRequest, "client=%q: port 0 is no client's port: give 1 to 65535, or no port", v)
		}
		client, hasPort = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	default:
		a, err := netip.ParseAddr(v)
		if err != nil || a.Zone() != "" {
			return client, false, apiError(http.StatusBadRequest, "client=%q: give an IP address or IP:PORT, such as 10.9.0.7, 10.9.0.7:51234 or [fd00::7]:51234", v)
		}
		client = netip.AddrPortFrom(a.Unmap(), 0)
	}
	if client.Addr().Is4() != svc.VIP.Unmap().Is4() && svc.Key != service.KeyGTPUInner {
		return client, false, apiError(http.StatusBadRequest, "client=%q: service %q's VIP %s is of the other IP family: no such client reaches it", v, svc.Name, svc.VIP)
	}
	return client, hasPort, nil
}
