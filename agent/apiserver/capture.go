package apiserver

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/graylane/graylane/cluster"
	"github.com/graylane/graylane/pkg/service"
)

// CaptureSpec is a capture the API was asked for, checked.
type CaptureSpec struct {
	Service  service.Service
	Share    service.Weight
	Duration time.Duration // 0: until Count
	Count    int           // 0: until Duration
	Node     string        // "": this node; "all": every member
	Snaplen  int           // 0: headers only, unless Payload
	Payload  bool
	Redact   bool
}

// Capturer runs captures: it calls start just before the first byte of
// the pcapng stream and writes it to what start returns. An error before
// start is the answer; one after it ends the stream.
type Capturer interface {
	Capture(ctx context.Context, c CaptureSpec, start func() io.Writer) error
}

// SetCapturer installs what runs captures.
func (s *Server) SetCapturer(c Capturer) { s.capturer = c }

// Limits of a capture request.
const (
	DefaultCaptureDuration = 10 * time.Second
	MaxCaptureDuration     = time.Hour
	MaxCaptureCount        = 10_000_000
	// DefaultCapturePercent is the share captured when the request and
	// the service's spec.mirror (to: capture) do not say.
	DefaultCapturePercent = service.Weight(100) // 1%
)

// captureHandler serves GET /v1/services/{name}/capture: the admin or
// the service's tenant gets a pcapng stream (application/x-pcapng).
func (s *Server) captureHandler(auth func(*http.Request) (identity, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := s.capture(w, r, auth)
		if err != nil {
			s.writeError(w, r, err)
		}
	}
}

func (s *Server) capture(w http.ResponseWriter, r *http.Request, auth func(*http.Request) (identity, error)) error {
	id, err := auth(r)
	if err != nil {
		return err
	}
	done, err := s.limits.admit(id)
	if err != nil {
		return err
	}
	defer done()
	if s.capturer == nil {
		return apiError(http.StatusServiceUnavailable, "%s", "this agent takes no captures yet")
	}
	svc, err := s.lookup(r, id)
	if err != nil {
		return err
	}
	c, err := DecodeCapture(r.URL.Query(), svc)
	if err != nil {
		return err
	}
	ended, err := s.tenantCapture(id, c)
	if err != nil {
		return err
	}
	defer ended()
	started := false
	start := func() io.Writer {
		started = true
		w.Header().Set("Content-Type", "application/x-pcapng")
		w.WriteHeader(http.StatusOK)
		return cluster.FlushWriter{W: w}
	}
	err = s.capturer.Capture(r.Context(), c, start)
	if err != nil && started {
		s.log.Warn("capture ended early", "service", svc.Name, "err", err)
		return nil
	}
	return err
}

// DecodeCapture checks a capture request's query for service svc.
func DecodeCapture(q url.Values, svc service.Service) (CaptureSpec, error) {
	c := CaptureSpec{Service: svc, Node: q.Get("node")}
	for k := range q {
		switch k {
		case "percent", "duration", "count", "node", "snaplen", "payload", "redact":
		default:
			return c, apiError(http.StatusBadRequest, "%s: no such capture parameter (percent, duration, count, node, snaplen, payload, redact)", k)
		}
	}
	var err error
	if c.Share, err = captureShare(q.Get("percent"), svc); err != nil {
		return c, err
	}
	if v := q.Get("duration"); v != "" {
		c.Duration, err = time.ParseDuration(v)
		if err != nil || c.Duration <= 0 || c.Duration > MaxCaptureDuration {
			return c, apiError(http.StatusBadRequest, "duration=%q: give a duration up to %s, such as 30s", v, MaxCaptureDuration)
		}
	}
	if v := q.Get("count"); v != "" {
		c.Count, err = strconv.Atoi(v)
		if err != nil || c.Count < 1 || c.Count > MaxCaptureCount {
			return c, apiError(http.StatusBadRequest, "count=%q: give a number of packets from 1 to %d", v, MaxCaptureCount)
		}
	}
	if c.Duration == 0 && c.Count == 0 {
		c.Duration = DefaultCaptureDuration
	}
	if v := q.Get("snaplen"); v != "" {
		c.Snaplen, err = strconv.Atoi(v)
		if err != nil || c.Snaplen < 64 || c.Snaplen > 65535 {
			return c, apiError(http.StatusBadRequest, "snaplen=%q: give the bytes kept of each packet, 64 to 65535", v)
		}
	}
	if c.Payload, err = boolParam(q, "payload"); err != nil {
		return c, err
	}
	if c.Redact, err = boolParam(q, "redact"); err != nil {
		return c, err
	}
	if c.Payload && c.Snaplen > 0 {
		return c, apiError(http.StatusBadRequest, "%s", "snaplen and payload: give one (payload keeps whole packets)")
	}
	return c, nil
}

// captureShare reads percent, defaulting to the service's capture mirror.
func captureShare(v string, svc service.Service) (service.Weight, error) {
	if v == "" {
		if m := svc.Mirror; m != nil && m.To == "capture" && m.Percent > 0 {
			return m.Percent, nil
		}
		return DefaultCapturePercent, nil
	}
	share, err := service.ParseWeight(v)
	if err != nil {
		return 0, apiError(http.StatusBadRequest, "percent=%q: %v", v, err)
	}
	if share == 0 {
		return 0, apiError(http.StatusBadRequest, "percent=%q: a capture of no flows captures nothing; give 0.01%%..100%%", v)
	}
	return share, nil
}

func boolParam(q url.Values, name string) (bool, error) {
	v := q.Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, apiError(http.StatusBadRequest, "%s=%q: give true or false", name, v)
	}
	return b, nil
}
