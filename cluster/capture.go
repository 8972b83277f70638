package cluster

// Captures across nodes: a node asks another for its capture of a service
// (POST /cluster/capture) and reads the pcapng stream the other writes as
// it captures. Members only: a capture holds subscriber traffic.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/graylane/graylane/pkg/api"
)

// CaptureFunc runs a capture on this node for another: req is the
// caller's request (JSON, the agent's to define and check). It calls start
// once it is about to write, and then writes the stream to the writer
// start returns; an error before start is the answer: an *api.Error with
// its status, else a 500. One after start ends the stream.
type CaptureFunc func(ctx context.Context, req []byte, start func() io.Writer) error

// RPCStatus is the HTTP status of another node's refusal (0: not one).
func RPCStatus(err error) int {
	var re *rpcError
	if errors.As(err, &re) {
		return re.Status
	}
	return 0
}

// SetCapture installs what answers other nodes' capture requests.
func (n *Node) SetCapture(f CaptureFunc) { n.capture.Store(&f) }

// serveCapture answers POST /cluster/capture.
func (n *Node) serveCapture(w http.ResponseWriter, r *http.Request) {
	if err := n.checkCaller(r, membersOnly); err != nil {
		writeRPCError(w, err)
		return
	}
	f := n.capture.Load()
	if f == nil {
		writeRPCError(w, rpcErrorf(http.StatusServiceUnavailable, "this node takes no captures yet"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	if err != nil {
		writeRPCError(w, rpcErrorf(http.StatusBadRequest, "%v", err))
		return
	}
	started := false
	start := func() io.Writer {
		started = true
		w.Header().Set("Content-Type", "application/x-pcapng")
		w.WriteHeader(http.StatusOK)
		return FlushWriter{w}
	}
	if err := (*f)(r.Context(), body, start); err != nil && !started {
		var ae *api.Error
		if errors.As(err, &ae) {
			err = rpcErrorf(ae.Status, "%s", ae.Message)
		}
		writeRPCError(w, err)
	}
}

// FlushWriter sends each write of a streamed answer at once: a capture
// is read while it runs (here, and by the API).
type FlushWriter struct{ W http.ResponseWriter }

func (f FlushWriter) Write(p []byte) (int, error) {
	n, err := f.W.Write(p)
	if fl, ok := f.W.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

// OpenCapture asks member node for a capture (req, the agent's JSON) and
// returns its stream, or the member's refusal (its status: RPCStatus).
// The stream ends when the capture ends; closing it or ending ctx ends
// the capture.
func (n *Node) OpenCapture(ctx context.Context, node string, req []byte) (io.ReadCloser, error) {
	if n.hc == nil {
		return nil, errors.New("a single-node cluster has no other nodes")
	}
	addr, err := n.memberAddress(node)
	if err != nil {
		return nil, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/cluster/capture", bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	// No overall timeout: a capture lasts as long as it was asked to.
	hc := &http.Client{Transport: n.hc.Transport}
	resp, err := hc.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", node, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		return nil, &rpcError{Status: resp.StatusCode, Message: fmt.Sprintf("node %s: %s", node, strings.TrimSpace(string(msg)))}
	}
	return resp.Body, nil
}

// memberAddress is the cluster address of member node.
func (n *Node) memberAddress(node string) (string, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return "", fmt.Errorf("read the cluster's members: %w", err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == node {
			return string(s.Address), nil
		}
	}
	return "", &NotFoundError{What: fmt.Sprintf("cluster member %q", node)}
}

// MemberNames lists the cluster's members.
func (n *Node) MemberNames() ([]string, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read the cluster's members: %w", err)
	}
	var out []string
	for _, s := range f.Configuration().Servers {
		out = append(out, string(s.ID))
	}
	return out, nil
}
