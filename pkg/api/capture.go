package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Capture asks the agent for a pcapng capture of a service's flows and
// returns the stream, unread: the caller reads it (to its end, or until it
// has enough) and closes it. An answer other than 200 is an *Error.
//
// The client's timeout bounds the wait for the answer to begin, plus
// q.Duration (an agent may begin only with its first packet); the stream
// itself lasts as long as the capture, or until ctx is done.
func (c *Client) Capture(ctx context.Context, service string, q CaptureRequest) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	begin := time.AfterFunc(c.http.Timeout+q.Duration, cancel)
	streaming := &http.Client{Transport: c.http.Transport} // no overall timeout
	resp, err := c.send(ctx, streaming, http.MethodGet, "/v1/services/"+url.PathEscape(service)+"/capture"+q.query(), "", nil)
	if !begin.Stop() {
		// The timer cancelled ctx: whatever send returned is cut off.
		if err == nil {
			resp.Body.Close()
		}
		cancel()
		return nil, fmt.Errorf("cannot reach the agent: %w", beginTimeout{})
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer cancel()
		defer resp.Body.Close()
		data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return nil, fmt.Errorf("read the agent's answer: %w", err)
		}
		return nil, answerError(resp, data)
	}
	return &captureStream{ReadCloser: resp.Body, cancel: cancel}, nil
}

// query is the capture's query string, in the order of the API's
// documentation, without the fields left empty.
func (q CaptureRequest) query() string {
	var params []string
	add := func(key, value string) { params = append(params, key+"="+url.QueryEscape(value)) }
	if q.Percent != "" {
		add("percent", q.Percent)
	}
	if q.Duration > 0 {
		add("duration", q.Duration.String())
	}
	if q.Count > 0 {
		add("count", strconv.Itoa(q.Count))
	}
	if q.Node != "" {
		add("node", q.Node)
	}
	if q.Snaplen > 0 {
		add("snaplen", strconv.Itoa(q.Snaplen))
	}
	if q.Payload {
		add("payload", "true")
	}
	if q.Redact {
		add("redact", "true")
	}
	if len(params) == 0 {
		return ""
	}
	return "?" + strings.Join(params, "&")
}

// captureStream is a capture's body; closing it also releases the
// request's context.
type captureStream struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (s *captureStream) Close() error {
	err := s.ReadCloser.Close()
	s.cancel()
	return err
}

// beginTimeout says a capture's answer did not begin in time. It is a
// net.Error that timed out, as the client's own timeouts are, so callers
// tell it apart the same way.
type beginTimeout struct{}

func (beginTimeout) Error() string   { return "the agent did not begin its answer in time" }
func (beginTimeout) Timeout() bool   { return true }
func (beginTimeout) Temporary() bool { return true }
