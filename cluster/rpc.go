package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// The RPCs between nodes, HTTP with JSON bodies over the cluster port.
type (
	joinRequest struct {
		Node    string `json:"node"`
		Address string `json:"address"`
		// Zone is the node's failure domain ("": none); older nodes
		// send none.
		Zone string `json:"zone,omitempty"`
	}
	removeRequest struct {
		Node string `json:"node"`
	}
	applyRequest struct {
		Data []byte `json:"data"` // an encoded command
	}
	applyResponse struct {
		Index uint64 `json:"index"`
		// The state's refusal, if any: "conflict", "notfound" or
		// "invalid", and the message.
		Kind    string `json:"kind,omitempty"`
		Message string `json:"message,omitempty"`
	}
	stateResponse struct {
		State State  `json:"state"`
		Index uint64 `json:"index"`
	}
	appliedResponse struct {
		Node  string `json:"node"`
		Index uint64 `json:"index"`
		// The node's raft view, which the leader's voter keeper reads
		// as its health (voters.go); older nodes send none of it.
		Zone         string `json:"zone,omitempty"`
		LastLogIndex uint64 `json:"lastLogIndex,omitempty"`
		Term         uint64 `json:"term,omitempty"`
		// LastContactNs is how long ago the node last heard from the
		// leader (0 on the leader, -1 never).
		LastContactNs int64 `json:"lastContactNs,omitempty"`
	}
	statusRequest struct {
		Service string `json:"service"`
	}
	// askRequest is a question to the leader: the one topic is
	// askAnalysis. The form stays for nodes of older versions, which
	// send it.
	askRequest struct {
		Topic string `json:"topic"`
		Arg   string `json:"arg"`
	}
	reportRequest struct {
		Node string          `json:"node"`
		Data json.RawMessage `json:"data"`
	}
)

// rpcError is a non-2xx answer of another node.
type rpcError struct {
	Status  int
	Message string
}

func (e *rpcError) Error() string { return e.Message }

func toApplyResponse(index uint64, err error) applyResponse {
	r := applyResponse{Index: index}
	var conflict *ConflictError
	var notFound *NotFoundError
	var invalid *InvalidError
	var forbidden *ForbiddenError
	var limit *LimitError
	switch {
	case err == nil:
	case errors.As(err, &invalid):
		r.Kind, r.Message = "invalid", err.Error()
	case errors.As(err, &forbidden):
		r.Kind, r.Message = "forbidden", err.Error()
	case errors.As(err, &limit):
		r.Kind, r.Message = "limit", err.Error()
	case errors.As(err, &notFound):
		r.Kind, r.Message = "notfound", notFound.What
	case errors.As(err, &conflict):
		r.Kind, r.Message = "conflict", err.Error()
	default:
		r.Kind, r.Message = "conflict", err.Error()
	}
	return r
}

func (r applyResponse) err() error {
	switch r.Kind {
	case "":
		return nil
	case "notfound":
		return &NotFoundError{What: r.Message}
	case "invalid":
		return &InvalidError{Err: errors.New(r.Message)}
	case "forbidden":
		return &ForbiddenError{Err: errors.New(r.Message)}
	case "limit":
		return &LimitError{Err: errors.New(r.Message)}
	default:
		return &ConflictError{Err: errors.New(r.Message)}
	}
}

// maxRPCBody bounds the body of an RPC's request and answer (a state of
// many services fits).
const maxRPCBody = 64 << 20

// rpcAccess says who may make an RPC.
type rpcAccess int

const (
	// anyNode: any holder of a certificate of the cluster's CA.
	anyNode rpcAccess = iota
	// membersOnly: the RPCs that change the state, which a node removed
	// from the cluster (and still holding a certificate) may not make.
	membersOnly
)

// rpcMethod answers one RPC from its request body. An *rpcError carries
// the status of a failure; any other error is a 500.
type rpcMethod func(ctx context.Context, body []byte) (any, error)

// callerNotMember returns the name of the node calling r (its certificate's
// common name) if it is not in the cluster's configuration.
func (n *Node) callerNotMember(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false // no TLS: an in-process test transport
	}
	caller := r.TLS.PeerCertificates[0].Subject.CommonName
	if f := n.raft.GetConfiguration(); f.Error() != nil || n.isMember(caller) {
		return "", false
	}
	return caller, true
}

// rpcHandler serves the RPCs: each path, who may call it, and its method.
func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	route := func(path string, access rpcAccess, method rpcMethod) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			out, err := n.answerRPC(r, access, method)
			if err != nil {
				writeRPCError(w, err)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(out)
		})
	}
	route("/cluster/join", anyNode, n.rpcJoin)
	route("/cluster/remove", membersOnly, n.rpcRemove)
	route("/cluster/apply", membersOnly, n.rpcApply)
	route("/cluster/state", anyNode, n.rpcState)
	route("/cluster/applied", anyNode, n.rpcApplied)
	route("/cluster/level", anyNode, n.rpcLevel)
	route("/cluster/report", membersOnly, n.rpcReport)
	route("/cluster/ask", anyNode, n.rpcAsk)
	route("/cluster/status", anyNode, n.rpcStatus)
	route("/cluster/explain", membersOnly, n.rpcExplain)
	// A stream, not a JSON answer: see capture.go.
	mux.HandleFunc("POST /cluster/capture", n.serveCapture)
	return mux
}

// answerRPC checks who calls, reads the request body and runs the method
// (with the caller's certificate name in its context: callerOf).
func (n *Node) answerRPC(r *http.Request, access rpcAccess, method rpcMethod) (any, error) {
	if err := n.checkCaller(r, access); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRPCBody))
	if err != nil {
		return nil, rpcErrorf(http.StatusBadRequest, "%v", err)
	}
	ctx := r.Context()
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		ctx = context.WithValue(ctx, callerKey{}, r.TLS.PeerCertificates[0].Subject.CommonName)
	}
	return method(ctx, body)
}

// checkCaller refuses a revoked certificate (the handshake checked it;
// a connection opened before it was revoked is checked again here) and,
// for membersOnly, a node that is not a member.
func (n *Node) checkCaller(r *http.Request, access rpcAccess) error {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		if node, revoked := n.fsm.Revoked(Fingerprint(r.TLS.PeerCertificates[0].Raw)); revoked {
			return rpcErrorf(http.StatusForbidden, "this certificate was revoked when node %q was removed", node)
		}
	}
	if access == membersOnly {
		if caller, ok := n.callerNotMember(r); ok {
			return rpcErrorf(http.StatusForbidden, "node %q is not a member of the cluster", caller)
		}
	}
	return nil
}

type callerKey struct{}

// callerOf is the certificate name of the node making an RPC: "" without
// TLS (in-process tests).
func callerOf(ctx context.Context) string {
	name, _ := ctx.Value(callerKey{}).(string)
	return name
}

// isMember says whether node is in the cluster's configuration.
func (n *Node) isMember(node string) bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == node {
			return true
		}
	}
	return false
}

func rpcErrorf(status int, format string, args ...any) *rpcError {
	return &rpcError{Status: status, Message: fmt.Sprintf(format, args...)}
}

// writeRPCError answers with an error's status (an *rpcError's, else 500)
// and its message as plain text.
func writeRPCError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var re *rpcError
	if errors.As(err, &re) {
		status = re.Status
	}
	http.Error(w, err.Error(), status)
}

// decode reads an RPC's JSON request: a 400 if the body is not one.
func decode(body []byte, req any) error {
	if err := json.Unmarshal(body, req); err != nil {
		return rpcErrorf(http.StatusBadRequest, "%v", err)
	}
	return nil
}

// decodeWant is decode for a request with required fields: a body that
// lacks them (complete reports false) is a 400 that says what to send.
func decodeWant(body []byte, req any, want string, complete func() bool) error {
	if err := json.Unmarshal(body, req); err != nil || !complete() {
		return rpcErrorf(http.StatusBadRequest, "%s: %v", want, err)
	}
	return nil
}

// mustLead is a 503 unless this node leads.
func (n *Node) mustLead() error {
	if !n.IsLeader() {
		return rpcErrorf(http.StatusServiceUnavailable, "not the leader")
	}
	return nil
}

// rpcJoin adds the calling node as a voter while the cluster has fewer
// than it keeps, else as a non-voter (through the leader: addMember). A node
// joins under its certificate's name: the member it asks checks that (a
// join a member forwards was checked by that member), and the leader
// refuses to give a member's name another address, or a member's address
// another name (remove the member first).
func (n *Node) rpcJoin(ctx context.Context, body []byte) (any, error) {
	var req joinRequest
	if err := decodeWant(body, &req, "join: want {node, address}", func() bool { return req.Node != "" && req.Address != "" }); err != nil {
		return nil, err
	}
	if caller := callerOf(ctx); caller != "" && caller != req.Node && !n.isMember(caller) {
		return nil, rpcErrorf(http.StatusForbidden, "the certificate of %q may not join the cluster as %q: a node joins under its certificate's name", caller, req.Node)
	}
	return struct{}{}, n.onLeader(ctx, "/cluster/join", req, func() error {
		if err := n.checkJoin(req); err != nil {
			return err
		}
		return n.addMember(req)
	})
}

// checkJoin refuses a join that would re-address a member or take a
// member's address; a member joining again as it is changes nothing.
func (n *Node) checkJoin(req joinRequest) error {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == req.Node && string(s.Address) != req.Address:
			return rpcErrorf(http.StatusConflict, "node %q is a member at %s, not %s: remove it first (graylanectl members remove %s) to give it another address", req.Node, s.Address, req.Address, req.Node)
		case string(s.ID) != req.Node && string(s.Address) == req.Address:
			return rpcErrorf(http.StatusConflict, "address %s is member %q's: %q may not join there", req.Address, s.ID, req.Node)
		}
	}
	return nil
}

// rpcRemove takes a member out of the cluster (through the leader).
func (n *Node) rpcRemove(ctx context.Context, body []byte) (any, error) {
	var req removeRequest
	if err := decodeWant(body, &req, "remove: want {node}", func() bool { return req.Node != "" }); err != nil {
		return nil, err
	}
	return struct{}{}, n.onLeader(ctx, "/cluster/remove", req, func() error { return n.removeLocal(req.Node) })
}

// rpcApply commits a follower's command on the leader. The state's
// refusal is an answer (applyResponse.Kind), not a failure. The command is
// read and tried against the state before it enters the log: bytes that
// are no command the leader knows are a 400, and a command the state
// refuses never takes a log entry.
func (n *Node) rpcApply(_ context.Context, body []byte) (any, error) {
	var req applyRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	if err := n.mustLead(); err != nil {
		return nil, err
	}
	cmd, err := Decode(req.Data)
	if errors.Is(err, errUnknownIgnorable) {
		return nil, rpcErrorf(http.StatusBadRequest, "command type %d: this leader does not know it (it is older than the sender)", req.Data[0])
	}
	if err != nil {
		return nil, rpcErrorf(http.StatusBadRequest, "not a command: %v", err)
	}
	if err := n.check(cmd); err != nil {
		return toApplyResponse(n.fsm.Index(), err), nil
	}
	index, err := n.applyLocal(req.Data)
	if errors.Is(err, errNoLeader) {
		return nil, rpcErrorf(http.StatusServiceUnavailable, "%v", err)
	}
	if err != nil && !refusal(err) {
		return nil, err
	}
	return toApplyResponse(index, err), nil
}

// refusal says whether err is the state's answer to a command (not a
// failure to commit it).
func refusal(err error) bool {
	var conflict *ConflictError
	var notFound *NotFoundError
	var invalid *InvalidError
	var forbidden *ForbiddenError
	var limit *LimitError
	return errors.As(err, &conflict) || errors.As(err, &notFound) || errors.As(err, &invalid) ||
		errors.As(err, &forbidden) || errors.As(err, &limit)
}

// check tries a command against this node's state before it goes into
// the log (on the leader) or to the leader (on a follower, whose state
// may lag: the leader checks again): a refusal takes no log entry.
func (n *Node) check(cmd Command) error {
	changed, err := n.fsm.changes(cmd)
	if err != nil && !refusal(err) {
		err = &InvalidError{Err: err}
	}
	if err != nil {
		return err
	}
	if err := n.checkLevel(cmd); err != nil {
		return err
	}
	return n.checkMemberAddresses(changed)
}

// rpcState answers a follower's consistent read on the leader.
func (n *Node) rpcState(ctx context.Context, _ []byte) (any, error) {
	if err := n.mustLead(); err != nil {
		return nil, err
	}
	st, idx, err := n.ConsistentState(ctx)
	if err != nil {
		return nil, rpcErrorf(http.StatusServiceUnavailable, "%v", err)
	}
	return stateResponse{State: st, Index: idx}, nil
}

// rpcApplied says which index this node applied to its kernel.
func (n *Node) rpcApplied(context.Context, []byte) (any, error) {
	return n.selfReport(), nil
}

// rpcReport passes a node's report to the leader's report handler.
func (n *Node) rpcReport(ctx context.Context, body []byte) (any, error) {
	var req reportRequest
	if err := decodeWant(body, &req, "report: want {node, data}", func() bool { return req.Node != "" }); err != nil {
		return nil, err
	}
	if caller := callerOf(ctx); caller != "" && caller != req.Node {
		return nil, rpcErrorf(http.StatusForbidden, "node %q may not report as %q", caller, req.Node)
	}
	if err := n.mustLead(); err != nil {
		return nil, err
	}
	f := n.report.Load()
	if f == nil {
		return nil, rpcErrorf(http.StatusServiceUnavailable, "this node takes no reports yet")
	}
	(*f)(req.Node, req.Data)
	return struct{}{}, nil
}

// askAnalysis asks for the leader's latest judgement of the release in
// askRequest.Arg; the answer is an *api.Analysis, null when it has none.
const askAnalysis = "analysis"

// rpcAsk answers a follower's question on the leader (AskAnalysis).
func (n *Node) rpcAsk(_ context.Context, body []byte) (any, error) {
	var req askRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	a := n.analyst.Load()
	if a == nil || !n.IsLeader() {
		return nil, rpcErrorf(http.StatusServiceUnavailable, "not the leader")
	}
	if req.Topic != askAnalysis {
		return nil, fmt.Errorf("no such question %q", req.Topic) // a 500, as older nodes answer
	}
	return (*a).Analysis(req.Arg), nil
}

// rpcStatus answers a status query for this node's kernel.
func (n *Node) rpcStatus(_ context.Context, body []byte) (any, error) {
	var req statusRequest
	if err := decode(body, &req); err != nil {
		return nil, err
	}
	f := n.status.Load()
	if f == nil {
		return nil, rpcErrorf(http.StatusServiceUnavailable, "this node's status is not available yet")
	}
	return (*f)(req.Service)
}

// onLeader runs fn if this node leads, else forwards the RPC to the leader
// (whose failure keeps its status).
func (n *Node) onLeader(ctx context.Context, path string, req any, fn func() error) error {
	if n.IsLeader() {
		return fn()
	}
	addr, _ := n.Leader()
	if addr == "" {
		return rpcErrorf(http.StatusServiceUnavailable, "%v", errNoLeader)
	}
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	if err := n.call(ctx, addr, path, req, nil); err != nil {
		var re *rpcError
		if errors.As(err, &re) {
			return err
		}
		return rpcErrorf(http.StatusBadGateway, "%v", err)
	}
	return nil
}

// call makes an RPC to the node at a cluster address.
func (n *Node) call(ctx context.Context, address, path string, req, out any) error {
	if n.hc == nil {
		return errors.New("a single-node cluster has no other nodes")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+address+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := n.hc.Do(hr)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRPCBody))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return &rpcError{Status: resp.StatusCode, Message: strings.TrimSpace(string(data))}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// hclogAdapter passes raft's log lines to slog.
func hclogAdapter(log *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "raft",
		Level:  hclog.Info,
		Output: slogWriter{log},
	})
}

type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(line, "[ERROR]"):
		w.log.Error(line)
	case strings.Contains(line, "[WARN]"):
		w.log.Warn(line)
	default:
		w.log.Info(line)
	}
	return len(p), nil
}
