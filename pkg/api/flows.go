package api

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
)

// Flows are a service's live flow-table entries on one node
// (GET /v1/services/{name}/flows?client=IP&limit=N).
type Flows struct {
	Node    string `json:"node"`
	Service string `json:"service"`
	// Total is how many entries match; Flows the first Limit of them.
	Total int    `json:"total"`
	Flows []Flow `json:"flows"`
}

// Flow is one live flow: who, where it goes, and where its request stands.
type Flow struct {
	Client  string `json:"client"`
	Backend string `json:"backend"`
	Pool    string `json:"pool"`
	// State is idle, connecting (TCP: no SYN-ACK yet) or awaiting (a
	// request without a response yet); WaitingSeconds how long since.
	State          string  `json:"state"`
	WaitingSeconds float64 `json:"waitingSeconds,omitempty"`
	// AgeSeconds is how long ago the flow's first packet came, to 16 s;
	// absent for a flow born before the agent's programs kept the clock.
	AgeSeconds *float64 `json:"ageSeconds,omitempty"`
	Mirrored   bool     `json:"mirrored,omitempty"`
	Captured   bool     `json:"captured,omitempty"`
}

// Flows lists a service's live flows on the node the client talks to;
// client ("" for all) keeps one client address's, limit bounds the list
// (0: the agent's default).
func (c *Client) Flows(ctx context.Context, service, client string, limit int) (Flows, error) {
	q := url.Values{}
	if client != "" {
		q.Set("client", client)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	path := "/v1/services/" + url.PathEscape(service) + "/flows"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out Flows
	return out, c.do(ctx, http.MethodGet, path, "", nil, &out)
}
