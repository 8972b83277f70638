// Package apiserver serves the agent's HTTP API (see package api for the
// paths): on a unix socket for root, and optionally over HTTPS for holders
// of a bearer token — an admin token, or a tenant token that sees and
// changes only its tenant's services. Writes go through the cluster's
// leader; every bad input gets a 4xx naming what is wrong and changes
// nothing.
package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/manifest"
	"github.com/graylane/graylane/pkg/service"
)

// Node is what the API needs of the cluster node.
type Node interface {
	Apply(ctx context.Context, c cluster.Command) (uint64, error)
	FSM() *cluster.FSM
	ConsistentState(ctx context.Context) (cluster.State, uint64, error)
	WaitApplied(ctx context.Context, index uint64, timeout time.Duration) (applied, notApplied, unreachable []string, err error)
	Members(ctx context.Context) ([]cluster.Member, error)
	RemoveMember(ctx context.Context, node string) error
	NodeStatus(ctx context.Context, svc string) (map[string]any, map[string]error)
}

// Token is a bearer token of the HTTPS API.
type Token struct {
	Name, Secret string
	// Tenant is the tenant the token may touch; "*" for all (admin).
	Tenant string
}

// Server builds the API's handlers.
type Server struct {
	node Node
	log  *slog.Logger
	// analysis returns the leader's latest judgement of a release (nil
	// when this node does not lead or has none).
	analysis func(release string) *api.Analysis
	// capturer runs captures (GET .../capture); nil: none.
	capturer Capturer
	// flows lists live flows (GET .../flows); nil: none.
	flows FlowLister
	// limits are each token's request rate and slots; logins the failed
	// logins by peer (see limits.go).
	limits callerLimits
	logins failedLogins
	// captures counts each tenant's captures running through this API
	// (tenantCapture).
	capMu    sync.Mutex
	captures map[string]int
}

// SetAnalysis installs where release judgements come from.
func (s *Server) SetAnalysis(f func(release string) *api.Analysis) { s.analysis = f }

// New returns the API of node.
func New(node Node, log *slog.Logger) *Server {
	return &Server{node: node, log: log, logins: failedLogins{log: log}}
}

// maxBody bounds a request body (manifests of many services fit).
const maxBody = 8 << 20

// identity is who a request comes from.
type identity struct {
	name   string
	tenant string // "*": admin
}

func (id identity) admin() bool { return id.tenant == "*" }

func (id identity) may(tenant string) bool {
	if tenant == "" {
		tenant = service.DefaultTenant
	}
	return id.admin() || id.tenant == tenant
}

type ctxKey struct{}

// Local is the handler for the unix socket: whoever can open it is root,
// an admin.
func (s *Server) Local() http.Handler {
	return s.with(func(r *http.Request) (identity, error) { return identity{name: "local", tenant: "*"}, nil })
}

// Remote is the handler for HTTPS: a bearer token from tokens is required.
// A peer whose logins keep failing is answered 429 before its token is
// looked at.
func (s *Server) Remote(tokens []Token) http.Handler {
	hashed := hashTokens(tokens)
	return s.with(func(r *http.Request) (identity, error) {
		if s.logins.blocked(r) {
			return identity{}, tooMany("too many failed logins from %s: wait a few seconds", peerAddr(r))
		}
		h := r.Header.Get("Authorization")
		secret, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || secret == "" {
			s.logins.failed(r, "no token")
			return identity{}, apiError(http.StatusUnauthorized, "%s", "no token: send Authorization: Bearer <token>")
		}
		t, ok := match(hashed, secret)
		if !ok {
			s.logins.failed(r, "unknown token")
			return identity{}, apiError(http.StatusUnauthorized, "unknown token")
		}
		return identity{name: t.name, tenant: t.tenant}, nil
	})
}

func (s *Server) with(auth func(*http.Request) (identity, error)) http.Handler {
	mux := http.NewServeMux()
	route := func(pattern string, h func(w http.ResponseWriter, r *http.Request, id identity) (any, error)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			id, err := auth(r)
			var done func()
			if err == nil {
				done, err = s.limits.admit(id)
			}
			if err == nil {
				defer done()
				limit := int64(maxBody)
				if !id.admin() {
					limit = tenantBody
				}
				r.Body = http.MaxBytesReader(w, r.Body, limit)
				r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, id))
				var out any
				out, err = h(w, r, id)
				if err == nil {
					writeJSON(w, http.StatusOK, out)
					return
				}
			}
			s.writeError(w, r, err)
		})
	}
	route("GET /v1/services", s.listServices)
	route("GET /v1/services/{name}", s.getService)
	route("POST /v1/apply", s.apply)
	route("DELETE /v1/services/{name}", s.deleteService)
	route("PUT /v1/services/{name}/weight", s.setWeight)
	route("PUT /v1/services/{name}/mirror", s.setMirror)
	route("GET /v1/services/{name}/flows", s.listFlows)
	route("GET /v1/services/{name}/explain", s.explain)
	route("POST /v1/services/{name}/pins", s.addPin)
	route("DELETE /v1/services/{name}/pins", s.removePin)
	route("GET /v1/members", s.members)
	route("DELETE /v1/members/{node}", s.removeMember)
	route("GET /v1/status", s.status)
	route("GET /v1/releases", s.listReleases)
	route("GET /v1/releases/{name}", s.getRelease)
	route("DELETE /v1/releases/{name}", s.deleteRelease)
	route("GET /v1/audit", s.listAudit)
	route("GET /v1/tenants", s.listTenants)
	route("GET /v1/tenants/{name}", s.getTenant)
	route("DELETE /v1/tenants/{name}", s.deleteTenant)
	route("POST /v1/releases/{name}/{action}", s.releaseAction)
	// A pcapng stream, not a JSON answer: see capture.go.
	mux.HandleFunc("GET /v1/services/{name}/capture", s.captureHandler(auth))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, apiError(http.StatusNotFound, "no such API: %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func apiError(status int, format string, args ...any) *api.Error {
	return &api.Error{Status: status, Message: fmt.Sprintf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers with the status an error deserves.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var ae *api.Error
	var conflict *cluster.ConflictError
	var notFound *cluster.NotFoundError
	var tooBig *http.MaxBytesError
	var forbidden *cluster.ForbiddenError
	var limit *cluster.LimitError
	var invalid *cluster.InvalidError
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &forbidden):
		ae = apiError(http.StatusForbidden, "refused: %s", forbidden.Error())
	case errors.As(err, &limit):
		ae = apiError(http.StatusUnprocessableEntity, "refused: %s", limit.Error())
	case errors.As(err, &invalid):
		ae = apiError(http.StatusBadRequest, "refused: %s", invalid.Error())
	case errors.As(err, &notFound):
		ae = apiError(http.StatusNotFound, "%s", notFound.Error())
	case errors.As(err, &conflict):
		ae = apiError(http.StatusConflict, "refused: %s", conflict.Error())
	case cluster.IsNoLeader(err), cluster.IsNotMember(err):
		ae = apiError(http.StatusServiceUnavailable, "%s", err.Error())
	case errors.As(err, &tooBig):
		ae = apiError(http.StatusRequestEntityTooLarge, "the request body exceeds %d bytes", tooBig.Limit)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		ae = apiError(http.StatusServiceUnavailable, "%s", err.Error())
	default:
		ae = apiError(http.StatusInternalServerError, "%s", err.Error())
	}
	if ae.Status >= 500 {
		s.log.Warn("API request failed", "method", r.Method, "path", r.URL.Path, "status", ae.Status, "err", ae.Message)
	}
	retryAfter(w, ae.Status)
	writeJSON(w, ae.Status, ae)
}

// state reads the desired state: local, or through the leader with
// ?consistent=true.
func (s *Server) state(r *http.Request) (cluster.State, error) {
	if r.URL.Query().Get("consistent") == "true" {
		st, _, err := s.node.ConsistentState(r.Context())
		return st, err
	}
	st, _ := s.node.FSM().State()
	return st, nil
}

func (s *Server) listServices(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	st, err := s.state(r)
	if err != nil {
		return nil, err
	}
	out := []api.Service{}
	for _, svc := range st.ServiceList() {
		if id.may(svc.Tenant) {
			out = append(out, ToAPI(svc))
		}
	}
	return out, nil
}

// lookup returns the named service if the caller may see it.
func (s *Server) lookup(r *http.Request, id identity) (service.Service, error) {
	st, err := s.state(r)
	if err != nil {
		return service.Service{}, err
	}
	name := r.PathValue("name")
	svc, ok := st.Services[name]
	if !ok {
		return svc, apiError(http.StatusNotFound, "service %q does not exist", name)
	}
	if !id.may(svc.Tenant) {
		// As if it did not exist: another tenant's service is none of the
		// caller's business, not even whose it is.
		return svc, apiError(http.StatusNotFound, "service %q does not exist", name)
	}
	return svc, nil
}

func (s *Server) getService(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	svc, err := s.lookup(r, id)
	if err != nil {
		return nil, err
	}
	return ToAPI(svc), nil
}

// write commits a command and, with ?wait=applied, waits for the members.
func (s *Server) write(r *http.Request, c cluster.Command) (api.Write, error) {
	q := r.URL.Query()
	wait := q.Get("wait")
	timeout := 5 * time.Second
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 || d > 5*time.Minute {
			return api.Write{}, apiError(http.StatusBadRequest, "timeout=%q: give a duration up to 5m, such as 5s", t)
		}
		timeout = d
	}
	if wait != "" && wait != "applied" {
		return api.Write{}, apiError(http.StatusBadRequest, "wait=%q: the only value is applied", wait)
	}
	withCaller(r, c)
	index, err := s.node.Apply(r.Context(), c)
	if err != nil {
		return api.Write{}, err
	}
	out := api.Write{Index: index}
	if wait == "applied" {
		out.Applied, out.NotApplied, out.Unreachable, err = s.node.WaitApplied(r.Context(), index, timeout)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

func (s *Server) apply(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	set, err := manifest.ParseAll("request", body)
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "%s", err.Error())
	}
	if len(set.Services) == 0 && len(set.Releases) == 0 && len(set.Tenants) == 0 {
		return nil, apiError(http.StatusBadRequest, "%s", "the request holds no manifest")
	}
	if len(set.Tenants) > 0 {
		return s.applyTenants(r, id, set.Tenants, len(set.Services)+len(set.Releases))
	}
	st, _ := s.node.FSM().State()
	tenants := map[string]string{} // service -> tenant, after this apply
	for name, svc := range st.Services {
		tenants[name] = svc.Tenant
	}
	for i := range set.Services {
		if t := set.Services[i].Tenant; (t == "" || t == service.DefaultTenant) && !id.admin() {
			// A tenant's manifest needs not name its tenant (the reader
			// fills in the default one, which no tenant token may write).
			set.Services[i].Tenant = id.tenant
		}
		svc := set.Services[i]
		if !id.may(svc.Tenant) {
			return nil, apiError(http.StatusForbidden, "token %q may not apply service %q of another tenant (metadata.tenant %q): it writes tenant %q's only", id.name, svc.Name, svc.Tenant, id.tenant)
		}
		if old, ok := st.Services[svc.Name]; ok && !id.may(old.Tenant) {
			return nil, apiError(http.StatusConflict, "service name %q is taken: choose another", svc.Name)
		}
		tenants[svc.Name] = svc.Tenant
	}
	for _, rel := range set.Releases {
		if tenant, ok := tenants[rel.Service]; ok && !id.may(tenant) {
			return nil, apiError(http.StatusNotFound, "release %q: service %q does not exist", rel.Name, rel.Service)
		}
		if old, ok := st.Releases[rel.Name]; ok && !id.may(tenants[old.Service]) {
			return nil, apiError(http.StatusConflict, "release name %q is taken: choose another", rel.Name)
		}
	}
	// What a tenant's gates may run and dial: gates.go.
	if err := s.checkGates(r.Context(), id, st, &set); err != nil {
		return nil, err
	}
	if len(set.Releases) == 0 {
		// The original command: nodes of an older version replay it.
		return s.write(r, &cluster.ApplyServices{Services: set.Services})
	}
	return s.write(r, &cluster.Apply{Services: set.Services, Releases: set.Releases})
}

// deleteService removes a service; one with releases only with
// ?cascade=true, which deletes them with it (none may be running).
func (s *Server) deleteService(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	svc, err := s.lookup(r, id)
	if err != nil {
		return nil, err
	}
	cascade := r.URL.Query().Get("cascade") == "true"
	st, _ := s.node.FSM().State()
	if rels := releasesOf(&st, svc.Name); len(rels) > 0 && !cascade {
		return nil, apiError(http.StatusConflict, "service %q has releases %s: delete them first (graylanectl delete release NAME), or delete with --cascade",
			svc.Name, strings.Join(rels, ", "))
	}
	return s.write(r, &cluster.DeleteService{Name: svc.Name, Cascade: cascade})
}

// DecodeWeight reads a weight request.
func DecodeWeight(body []byte) (service.Weight, error) {
	var req api.WeightRequest
	if err := decodeJSON(body, &req); err != nil {
		return 0, err
	}
	w, err := service.ParseWeight(req.Weight)
	if err != nil {
		return 0, apiError(http.StatusBadRequest, "weight: %v", err)
	}
	return w, nil
}

// DecodePin reads a pin request.
func DecodePin(body []byte) (netip.Prefix, service.Pool, error) {
	var req api.PinRequest
	if err := decodeJSON(body, &req); err != nil {
		return netip.Prefix{}, 0, err
	}
	p, err := netip.ParsePrefix(req.Prefix)
	if err != nil {
		return p, 0, apiError(http.StatusBadRequest, "prefix: %q is not a CIDR prefix such as 10.9.0.0/16", req.Prefix)
	}
	if p != p.Masked() {
		return p, 0, apiError(http.StatusBadRequest, "prefix: %s has host bits set; did you mean %s?", p, p.Masked())
	}
	pool, err := service.ParsePool(req.Pool)
	if err != nil {
		return p, 0, apiError(http.StatusBadRequest, "pool: %v", err)
	}
	return p, pool, nil
}

// decodeJSON reads exactly one JSON object with known fields.
func decodeJSON(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiError(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "%s", "invalid JSON body: more than one value")
	}
	return nil
}

func (s *Server) setWeight(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	w, err := DecodeWeight(body)
	if err != nil {
		return nil, err
	}
	svc, err := s.lookup(r, id)
	if err != nil {
		return nil, err
	}
	return s.write(r, &cluster.SetWeight{Name: svc.Name, Weight: w})
}

func (s *Server) addPin(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	prefix, pool, err := DecodePin(body)
	if err != nil {
		return nil, err
	}
	svc, err := s.lookup(r, id)
	if err != nil {
		return nil, err
	}
	return s.write(r, &cluster.SetPin{Name: svc.Name, Prefix: prefix, Pool: pool})
}

func (s *Server) removePin(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	p, err := netip.ParsePrefix(r.URL.Query().Get("prefix"))
	if err != nil {
		return nil, apiError(http.StatusBadRequest, "prefix=%q: give the pinned CIDR prefix", r.URL.Query().Get("prefix"))
	}
	svc, err := s.lookup(r, id)
	if err != nil {
		return nil, err
	}
	return s.write(r, &cluster.RemovePin{Name: svc.Name, Prefix: p})
}

func (s *Server) members(_ http.ResponseWriter, r *http.Request, _ identity) (any, error) {
	ms, err := s.node.Members(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]api.Member, len(ms))
	for i, m := range ms {
		out[i] = m.API()
	}
	return out, nil
}

func (s *Server) removeMember(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	if !id.admin() {
		return nil, apiError(http.StatusForbidden, "token %q is a tenant token: only an admin token removes members", id.name)
	}
	if err := s.node.RemoveMember(r.Context(), r.PathValue("node")); err != nil {
		return nil, err
	}
	return api.Write{}, nil
}

func (s *Server) status(_ http.ResponseWriter, r *http.Request, id identity) (any, error) {
	name := r.URL.Query().Get("service")
	st, index := s.node.FSM().State()
	if r.URL.Query().Get("consistent") == "true" {
		var err error
		if st, index, err = s.node.ConsistentState(r.Context()); err != nil {
			return nil, err
		}
	}
	if name != "" {
		svc, ok := st.Services[name]
		if !ok {
			return nil, apiError(http.StatusNotFound, "service %q does not exist", name)
		}
		if !id.may(svc.Tenant) {
			return nil, apiError(http.StatusForbidden, "token %q may not see service %q of tenant %q", id.name, name, svc.Tenant)
		}
	}
	answers, errs := s.node.NodeStatus(r.Context(), name)
	out := api.Status{Index: index, Services: []api.ServiceStatus{}}
	for _, svc := range st.ServiceList() {
		if (name != "" && svc.Name != name) || !id.may(svc.Tenant) {
			continue
		}
		ss := api.ServiceStatus{Name: svc.Name, Weight: svc.CanaryWeight.String()}
		for node, answer := range answers {
			ns := api.NodeStatus{Node: node}
			// Each node answers map[service]NodeStatus (as JSON).
			raw, _ := json.Marshal(answer)
			var byService map[string]api.NodeStatus
			if err := json.Unmarshal(raw, &byService); err != nil {
				ns.Error = fmt.Sprintf("unreadable answer: %v", err)
			} else if got, ok := byService[svc.Name]; ok {
				ns = got
				ns.Node = node
			} else {
				ns.Error = "not installed on this node yet"
			}
			ss.Nodes = append(ss.Nodes, ns)
		}
		for node, err := range errs {
			ss.Nodes = append(ss.Nodes, api.NodeStatus{Node: node, Error: err.Error()})
		}
		sortNodes(ss.Nodes)
		out.Services = append(out.Services, ss)
	}
	return out, nil
}
