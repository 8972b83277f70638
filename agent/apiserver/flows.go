package apiserver

import (
	"net/http"
	"net/netip"
	"strconv"

	"github.com/graylane/graylane/pkg/api"
)

// FlowLister reads a service's live flows from this node's kernel.
type FlowLister interface {
	Flows(service string, client netip.Addr, limit int) (api.Flows, error)
}

// SetFlowLister installs what lists flows.
func (s *Server) SetFlowLister(f FlowLister) { s.flows = f }

// Limits of a flows request.
const (
	DefaultFlowsLimit = 100
	MaxFlowsLimit     = 100000
)

// listFlows answers GET /v1/services/{name}/flows (admin or the
// service's tenant).
func (s *Server) listFlows(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	svc, err := s.lookup(r, id)
	if err != nil {
		return nil, err
	}
	q := r.URL.Query()
	for k := range q {
		if k != "client" && k != "limit" {
			return nil, apiError(http.StatusBadRequest, "%s: no such flows parameter (client, limit)", k)
		}
	}
	var client netip.Addr
	if v := q.Get("client"); v != "" {
		if client, err = netip.ParseAddr(v); err != nil {
			return nil, apiError(http.StatusBadRequest, "client=%q: give an IP address, such as 10.9.0.1", v)
		}
	}
	limit := DefaultFlowsLimit
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxFlowsLimit {
			return nil, apiError(http.StatusBadRequest, "limit=%q: give 1 to %d", v, MaxFlowsLimit)
		}
	}
	if s.flows == nil {
		return nil, apiError(http.StatusServiceUnavailable, "%s", "this agent lists no flows")
	}
	return s.flows.Flows(svc.Name, client, limit)
}
