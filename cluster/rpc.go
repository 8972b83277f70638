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
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// The RPCs between nodes, HTTP with JSON bodies over the cluster port.
type (
	joinRequest struct {
		Node    string `json:"node"`
		Address string `json:"address"`
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
	}
	statusRequest struct {
		Service string `json:"service"`
	}
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
	switch {
	case err == nil:
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
	default:
		return &ConflictError{Err: errors.New(r.Message)}
	}
}

// membersOnly are the RPCs that change the state: a node removed from the
// cluster (which still holds a certificate of its CA) may not make them.
var membersOnly = map[string]bool{"/cluster/apply": true, "/cluster/remove": true, "/cluster/report": true}

// callerNotMember returns the name of the node calling r (its certificate's
// common name) if it is not in the cluster's configuration.
func (n *Node) callerNotMember(r *http.Request) (string, bool) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return "", false // no TLS: an in-process test transport
	}
	caller := r.TLS.PeerCertificates[0].Subject.CommonName
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return "", false
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == caller {
			return "", false
		}
	}
	return caller, true
}

func (n *Node) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	handle := func(path string, fn func(ctx context.Context, body []byte) (any, int, error)) {
		mux.HandleFunc("POST "+path, func(w http.ResponseWriter, r *http.Request) {
			if membersOnly[path] {
				if caller, ok := n.callerNotMember(r); ok {
					http.Error(w, fmt.Sprintf("node %q is not a member of the cluster", caller), http.StatusForbidden)
					return
				}
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			out, status, err := fn(r.Context(), body)
			if err != nil {
				http.Error(w, err.Error(), status)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(out)
		})
	}
	handle("/cluster/join", func(ctx context.Context, body []byte) (any, int, error) {
		var req joinRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Node == "" || req.Address == "" {
			return nil, http.StatusBadRequest, fmt.Errorf("join: want {node, address}: %v", err)
		}
		status, err := n.onLeader(ctx, "/cluster/join", req, func() error {
			return n.raft.AddVoter(raft.ServerID(req.Node), raft.ServerAddress(req.Address), 0, 10*time.Second).Error()
		})
		return struct{}{}, status, err
	})
	handle("/cluster/remove", func(ctx context.Context, body []byte) (any, int, error) {
		var req removeRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Node == "" {
			return nil, http.StatusBadRequest, fmt.Errorf("remove: want {node}: %v", err)
		}
		status, err := n.onLeader(ctx, "/cluster/remove", req, func() error { return n.removeLocal(req.Node) })
		return struct{}{}, status, err
	})
	handle("/cluster/apply", func(ctx context.Context, body []byte) (any, int, error) {
		var req applyRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, http.StatusBadRequest, err
		}
		if !n.IsLeader() {
			return nil, http.StatusServiceUnavailable, errors.New("not the leader")
		}
		index, err := n.applyLocal(req.Data)
		if errors.Is(err, errNoLeader) {
			return nil, http.StatusServiceUnavailable, err
		}
		var conflict *ConflictError
		var notFound *NotFoundError
		if err != nil && !errors.As(err, &conflict) && !errors.As(err, &notFound) {
			return nil, http.StatusInternalServerError, err
		}
		return toApplyResponse(index, err), 0, nil
	})
	handle("/cluster/state", func(ctx context.Context, _ []byte) (any, int, error) {
		if !n.IsLeader() {
			return nil, http.StatusServiceUnavailable, errors.New("not the leader")
		}
		st, idx, err := n.ConsistentState(ctx)
		if err != nil {
			return nil, http.StatusServiceUnavailable, err
		}
		return stateResponse{State: st, Index: idx}, 0, nil
	})
	handle("/cluster/applied", func(context.Context, []byte) (any, int, error) {
		return appliedResponse{Node: n.cfg.Node, Index: n.Applied()}, 0, nil
	})
	handle("/cluster/report", func(_ context.Context, body []byte) (any, int, error) {
		var req reportRequest
		if err := json.Unmarshal(body, &req); err != nil || req.Node == "" {
			return nil, http.StatusBadRequest, fmt.Errorf("report: want {node, data}: %v", err)
		}
		if !n.IsLeader() {
			return nil, http.StatusServiceUnavailable, errors.New("not the leader")
		}
		f := n.report.Load()
		if f == nil {
			return nil, http.StatusServiceUnavailable, errors.New("this node takes no reports yet")
		}
		(*f)(req.Node, req.Data)
		return struct{}{}, 0, nil
	})
	handle("/cluster/ask", func(_ context.Context, body []byte) (any, int, error) {
		var req askRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, http.StatusBadRequest, err
		}
		f := n.ask.Load()
		if f == nil || !n.IsLeader() {
			return nil, http.StatusServiceUnavailable, errors.New("not the leader")
		}
		out, err := (*f)(req.Topic, req.Arg)
		if err != nil {
			return nil, http.StatusInternalServerError, err
		}
		return out, 0, nil
	})
	handle("/cluster/status", func(_ context.Context, body []byte) (any, int, error) {
		var req statusRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, http.StatusBadRequest, err
		}
		f := n.status.Load()
		if f == nil {
			return nil, http.StatusServiceUnavailable, errors.New("this node's status is not available yet")
		}
		out, err := (*f)(req.Service)
		if err != nil {
			return nil, http.StatusInternalServerError, err
		}
		return out, 0, nil
	})
	return mux
}

// onLeader runs fn if this node leads, else forwards the RPC to the leader.
func (n *Node) onLeader(ctx context.Context, path string, req any, fn func() error) (int, error) {
	if n.IsLeader() {
		if err := fn(); err != nil {
			return http.StatusInternalServerError, err
		}
		return 0, nil
	}
	addr, _ := n.Leader()
	if addr == "" {
		return http.StatusServiceUnavailable, errNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, leaderWait)
	defer cancel()
	if err := n.call(ctx, addr, path, req, nil); err != nil {
		var re *rpcError
		if errors.As(err, &re) {
			return re.Status, err
		}
		return http.StatusBadGateway, err
	}
	return 0, nil
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
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
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
