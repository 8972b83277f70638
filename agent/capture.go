package agent

// Captures through the API: on this node (the hub), on another (its
// stream, through the cluster), or on every member, merged in time order.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/graylane/graylane/agent/apiserver"
	"github.com/graylane/graylane/agent/captures"
	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/capture"
	"github.com/graylane/graylane/pkg/redact"
	"github.com/graylane/graylane/pkg/service"
)

// peerCapture is a capture one node asks of another (JSON): checked by
// the asking node's API; the redaction key is the asking node's, so that
// every node of a merged capture gives an address the same pseudonym.
type peerCapture struct {
	Service  string        `json:"service"`
	Share    uint16        `json:"share"` // basis points
	Duration time.Duration `json:"duration"`
	Count    int           `json:"count"`
	Snaplen  int           `json:"snaplen"`
	Payload  bool          `json:"payload"`
	// StableOnly: the stable pool's flows only (a shadow gate's capture).
	StableOnly bool   `json:"stableOnly,omitempty"`
	RedactKey  []byte `json:"redactKey,omitempty"`
}

// Capture runs an API capture (apiserver.Capturer).
func (a *Agent) Capture(ctx context.Context, c apiserver.CaptureSpec, start func() io.Writer) error {
	req := peerCapture{Service: c.Service.Name, Share: uint16(c.Share), Duration: c.Duration, Count: c.Count,
		Snaplen: c.Snaplen, Payload: c.Payload}
	if c.Redact {
		req.RedactKey = make([]byte, redact.KeySize)
		rand.Read(req.RedactKey)
	}
	switch c.Node {
	case "", a.cfg.Node:
		return a.captureLocal(ctx, req, start)
	case "all":
		return a.captureAll(ctx, req, start)
	}
	if nodes, err := a.node.MemberNames(); err != nil {
		return err
	} else if !slices.Contains(nodes, c.Node) {
		return apiErr(http.StatusNotFound, "node %q is not a member of the cluster (members: %s; or all)", c.Node, strings.Join(nodes, ", "))
	}
	rc, err := a.openPeerCapture(ctx, c.Node, req)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(start(), rc)
	return err
}

// captureLocal runs req on this node's hub.
func (a *Agent) captureLocal(ctx context.Context, req peerCapture, start func() io.Writer) error {
	st, _ := a.node.FSM().State()
	svc, ok := st.Services[req.Service]
	if !ok {
		return apiErr(http.StatusNotFound, "service %q does not exist", req.Service)
	}
	hr := captures.Request{Service: req.Service, Share: service.Weight(req.Share), Duration: req.Duration,
		Count: req.Count, Snaplen: req.Snaplen, Payload: req.Payload, StableOnly: req.StableOnly}
	if req.RedactKey != nil {
		r, err := redact.New(req.RedactKey)
		if err != nil {
			return apiErr(http.StatusBadRequest, "redaction key: %v", err)
		}
		hr.Redactor, hr.Keep = r, serviceAddrs(svc)
	}
	w := &lazyWriter{start: start}
	res, err := a.hub.Capture(ctx, hr, w)
	if errors.Is(err, captures.ErrNotInstalled) && !w.started() {
		return apiErr(http.StatusConflict, "node %s: %v", a.cfg.Node, err)
	}
	if errors.Is(err, captures.ErrBusy) && !w.started() {
		return apiErr(http.StatusTooManyRequests, "node %s: %v", a.cfg.Node, err)
	}
	a.log.Info("capture done", "service", req.Service, "written", res.Written, "dropped", res.Dropped, "seen", res.Seen, "err", err)
	return err
}

// serviceAddrs keeps a service's own addresses (VIP, backends) out of a
// redaction: the client and UE addresses are the subscribers'.
func serviceAddrs(svc service.Service) func(netip.Addr) bool {
	own := map[netip.Addr]bool{svc.VIP.Unmap(): true}
	for _, b := range append(append([]service.Backend{}, svc.Stable...), svc.Canary...) {
		own[b.Addr.Addr().Unmap()] = true
	}
	return func(a netip.Addr) bool { return own[a.Unmap()] }
}

// openPeerCapture asks member node for its stream of req.
func (a *Agent) openPeerCapture(ctx context.Context, node string, req peerCapture) (io.ReadCloser, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	rc, err := a.node.OpenCapture(ctx, node, body)
	if err != nil {
		if status := cluster.RPCStatus(err); status != 0 {
			return nil, &api.Error{Status: status, Message: err.Error()}
		}
		var nf *cluster.NotFoundError
		if errors.As(err, &nf) {
			return nil, err
		}
		return nil, &api.Error{Status: http.StatusBadGateway, Message: err.Error()}
	}
	return rc, nil
}

// captureAll runs req on every member and merges the streams in time
// order. Every member must start its capture, or none is kept.
func (a *Agent) captureAll(ctx context.Context, req peerCapture, start func() io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nodes, err := a.node.MemberNames()
	if err != nil {
		return err
	}
	var sources []capture.Source
	defer func() {
		for _, s := range sources {
			if c, ok := s.R.(io.Closer); ok {
				c.Close()
			}
		}
	}()
	var refused []string
	for _, node := range nodes {
		if node == a.cfg.Node {
			sources = append(sources, capture.Source{Node: node, R: a.localStream(ctx, req)})
			continue
		}
		rc, err := a.openPeerCapture(ctx, node, req)
		if err != nil {
			refused = append(refused, err.Error())
			continue
		}
		sources = append(sources, capture.Source{Node: node, R: rc})
	}
	if len(refused) > 0 {
		return &api.Error{Status: http.StatusBadGateway, Message: "capture on every node: " + strings.Join(refused, "; ")}
	}
	_, err = capture.Merge(ctx, start(), sources)
	return err
}

// localStream runs req on this node into a pipe.
func (a *Agent) localStream(ctx context.Context, req peerCapture) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		err := a.captureLocal(ctx, req, func() io.Writer { return pw })
		pw.CloseWithError(err)
	}()
	return pr
}

// servePeerCapture answers another node's capture request
// (cluster.CaptureFunc).
func (a *Agent) servePeerCapture(ctx context.Context, body []byte, start func() io.Writer) error {
	var req peerCapture
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiErr(http.StatusBadRequest, "capture request: %v", err)
	}
	switch {
	case req.Share == 0 || req.Share > uint16(service.MaxWeight):
		return apiErr(http.StatusBadRequest, "capture request: share %d is not 1..%d basis points", req.Share, service.MaxWeight)
	case req.Duration < 0 || req.Duration > apiserver.MaxCaptureDuration || req.Count < 0 || req.Count > apiserver.MaxCaptureCount:
		return apiErr(http.StatusBadRequest, "capture request: duration %s or count %d out of range", req.Duration, req.Count)
	case req.Duration == 0 && req.Count == 0:
		return apiErr(http.StatusBadRequest, "capture request: no duration and no count")
	}
	return a.captureLocal(ctx, req, start)
}

// lazyWriter calls start at its first write.
type lazyWriter struct {
	start func() io.Writer
	w     io.Writer
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if l.w == nil {
		l.w = l.start()
	}
	return l.w.Write(p)
}

func (l *lazyWriter) started() bool { return l.w != nil }

// apiErr is an error the API answers with status.
func apiErr(status int, format string, args ...any) error {
	return &api.Error{Status: status, Message: fmt.Sprintf(format, args...)}
}
