package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// DefaultServer is the agent's API socket.
const DefaultServer = "unix:///run/graylane/api.sock"

// Client talks to one agent's API.
type Client struct {
	base       string // URL prefix of the API: "http://unix" or "https://host:port"
	token      string
	http       *http.Client
	consistent bool
}

// ClientOptions configure a Client.
type ClientOptions struct {
	// Server is unix:///path/to/socket or https://host:port.
	Server string
	// Token is the bearer token for an https server.
	Token string
	// TLS is the client TLS configuration for an https server (nil: the
	// system roots).
	TLS *tls.Config
	// Timeout bounds each request; default 30s.
	Timeout time.Duration
	// Consistent makes reads linearizable: answered from the leader's
	// state, seeing every write committed before them. Default: the
	// agent's local state, which may lag the leader by a moment.
	Consistent bool
}

// NewClient returns a client of the agent at opts.Server.
func NewClient(opts ClientOptions) (*Client, error) {
	if opts.Server == "" {
		opts.Server = DefaultServer
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30 * time.Second
	}
	u, err := url.Parse(opts.Server)
	if err != nil {
		return nil, fmt.Errorf("--server %q: %w", opts.Server, err)
	}
	tr := &http.Transport{TLSClientConfig: opts.TLS}
	c := &Client{token: opts.Token, http: &http.Client{Transport: tr, Timeout: opts.Timeout}, consistent: opts.Consistent}
	switch u.Scheme {
	case "unix":
		path := u.Path
		if path == "" {
			return nil, fmt.Errorf("--server %q: a unix socket needs a path, as in %s", opts.Server, DefaultServer)
		}
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://unix"
	case "https":
		if u.Host == "" {
			return nil, fmt.Errorf("--server %q: give host:port, as in https://10.0.0.1:7443", opts.Server)
		}
		c.base = "https://" + u.Host
	default:
		return nil, fmt.Errorf("--server %q: use unix:///path/to/socket or https://host:port", opts.Server)
	}
	return c, nil
}

// WriteOptions tune a write.
type WriteOptions struct {
	// WaitApplied returns only once every live member applied the write to
	// its kernel (or Timeout passed).
	WaitApplied bool
	Timeout     time.Duration
}

func (o WriteOptions) query() string {
	if !o.WaitApplied {
		return ""
	}
	q := "?wait=applied"
	if o.Timeout > 0 {
		q += "&timeout=" + o.Timeout.String()
	}
	return q
}

// Services lists the services.
func (c *Client) Services(ctx context.Context) ([]Service, error) {
	var out []Service
	return out, c.do(ctx, http.MethodGet, "/v1/services"+c.readQuery("?"), "", nil, &out)
}

// Service returns one service.
func (c *Client) Service(ctx context.Context, name string) (Service, error) {
	var out Service
	return out, c.do(ctx, http.MethodGet, "/v1/services/"+url.PathEscape(name)+c.readQuery("?"), "", nil, &out)
}

// Apply creates or updates the services of manifests (YAML), all or none.
func (c *Client) Apply(ctx context.Context, manifests []byte, o WriteOptions) (Write, error) {
	var out Write
	return out, c.do(ctx, http.MethodPost, "/v1/apply"+o.query(), "application/yaml", manifests, &out)
}

// Delete removes a service.
func (c *Client) Delete(ctx context.Context, name string, o WriteOptions) (Write, error) {
	var out Write
	return out, c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(name)+o.query(), "", nil, &out)
}

// SetWeight sets a service's canary weight.
func (c *Client) SetWeight(ctx context.Context, name, weight string, o WriteOptions) (Write, error) {
	var out Write
	body, _ := json.Marshal(WeightRequest{Weight: weight})
	return out, c.do(ctx, http.MethodPut, "/v1/services/"+url.PathEscape(name)+"/weight"+o.query(), "application/json", body, &out)
}

// SetMirror sets or (with Off) stops the mirroring of a service's flows.
func (c *Client) SetMirror(ctx context.Context, name string, m MirrorRequest, o WriteOptions) (Write, error) {
	var out Write
	body, _ := json.Marshal(m)
	return out, c.do(ctx, http.MethodPut, "/v1/services/"+url.PathEscape(name)+"/mirror"+o.query(), "application/json", body, &out)
}

// AddPin adds or changes a pin.
func (c *Client) AddPin(ctx context.Context, name, prefix, pool string, o WriteOptions) (Write, error) {
	var out Write
	body, _ := json.Marshal(PinRequest{Prefix: prefix, Pool: pool})
	return out, c.do(ctx, http.MethodPost, "/v1/services/"+url.PathEscape(name)+"/pins"+o.query(), "application/json", body, &out)
}

// RemovePin removes a pin.
func (c *Client) RemovePin(ctx context.Context, name, prefix string, o WriteOptions) (Write, error) {
	var out Write
	q := o.query()
	if q == "" {
		q = "?"
	} else {
		q += "&"
	}
	return out, c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(name)+"/pins"+q+"prefix="+url.QueryEscape(prefix), "", nil, &out)
}

// Members lists the cluster's members.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	return out, c.do(ctx, http.MethodGet, "/v1/members", "", nil, &out)
}

// RemoveMember removes a node from the cluster.
func (c *Client) RemoveMember(ctx context.Context, node string) (Write, error) {
	var out Write
	return out, c.do(ctx, http.MethodDelete, "/v1/members/"+url.PathEscape(node), "", nil, &out)
}

// Status returns the status of every service, or of one.
func (c *Client) Status(ctx context.Context, service string) (Status, error) {
	var out Status
	path := "/v1/status"
	if service != "" {
		path += "?service=" + url.QueryEscape(service) + c.readQuery("&")
	} else {
		path += c.readQuery("?")
	}
	return out, c.do(ctx, http.MethodGet, path, "", nil, &out)
}

// Releases lists the releases.
func (c *Client) Releases(ctx context.Context) ([]Release, error) {
	var out []Release
	return out, c.do(ctx, http.MethodGet, "/v1/releases"+c.readQuery("?"), "", nil, &out)
}

// Release returns one release with its history.
func (c *Client) Release(ctx context.Context, name string) (Release, error) {
	var out Release
	return out, c.do(ctx, http.MethodGet, "/v1/releases/"+url.PathEscape(name)+c.readQuery("?"), "", nil, &out)
}

// ReleaseAction starts, pauses, resumes, promotes or aborts a release.
func (c *Client) ReleaseAction(ctx context.Context, name, action string, o WriteOptions) (Write, error) {
	var out Write
	return out, c.do(ctx, http.MethodPost, "/v1/releases/"+url.PathEscape(name)+"/"+url.PathEscape(action)+o.query(), "", nil, &out)
}

// PromoteFull promotes a release and makes its canary the stable pool.
func (c *Client) PromoteFull(ctx context.Context, name string, o WriteOptions) (Write, error) {
	var out Write
	q := o.query()
	if q == "" {
		q = "?full=true"
	} else {
		q += "&full=true"
	}
	return out, c.do(ctx, http.MethodPost, "/v1/releases/"+url.PathEscape(name)+"/promote"+q, "", nil, &out)
}

// readQuery is the query that makes a read consistent, after sep.
func (c *Client) readQuery(sep string) string {
	if !c.consistent {
		return ""
	}
	return sep + "consistent=true"
}

func (c *Client) do(ctx context.Context, method, path, contentType string, body []byte, out any) error {
	resp, err := c.send(ctx, c.http, method, path, contentType, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read the agent's answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		return answerError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the agent's answer is not what this graylanectl expects (versions differ?): %w", err)
	}
	return nil
}

// send makes one request with hc and returns the answer, whatever its
// status.
func (c *Client) send(ctx context.Context, hc *http.Client, method, path, contentType string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && strings.HasPrefix(c.base, "http://unix") {
			return nil, fmt.Errorf("cannot reach the agent's socket (is graylane-agent running, and are you root?): %w", err)
		}
		return nil, fmt.Errorf("cannot reach the agent: %w", err)
	}
	return resp, nil
}

// answerError is the Error of an answer that is not a success, read from
// its JSON body (or its status and text if it has none).
func answerError(resp *http.Response, data []byte) *Error {
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(data, e) != nil || e.Message == "" {
		e.Message = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	return e
}
