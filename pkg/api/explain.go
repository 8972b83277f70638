package api

import (
	"context"
	"net/http"
	"net/url"
)

// Explanation says why a client's new flows to a service go where they
// go, read from one node's kernel (GET /v1/services/{name}/explain?
// client=IP[:PORT][&node=NODE]): the kernel's own decision code run on
// the kernel's maps, and the client's live flows there.
type Explanation struct {
	// Node is the node whose kernel answered.
	Node    string `json:"node"`
	Service string `json:"service"`
	// Client is the key explained: IP:PORT, or for a service keyed by
	// client or gtpu-inner the address alone (the port does not count).
	Client string `json:"client"`
	// Key is what the service hashes: flow (the 5-tuple), client, or
	// gtpu-inner (the UE address inside GTP-U).
	Key string `json:"key"`
	// Pool is where a new flow of the key goes now; Reason what chose it:
	// pin, weight, rate (the weight made the key eligible for the canary,
	// a rate token decides each flow); for an L7 service (L7), what a
	// connection no match rule decides gets.
	Pool   string `json:"pool"`
	Reason string `json:"reason"`
	// Bucket (0..9999) is the key's place in the split; Weight the canary
	// weight the kernel holds, in the same unit (basis points): the
	// weight sends the key to the canary iff Bucket < Weight.
	Bucket        uint32 `json:"bucket"`
	Weight        uint32 `json:"weight"`
	WeightPercent string `json:"weightPercent"`
	// Backend is the pool's Maglev table's backend for the key's Slot.
	Backend string `json:"backend"`
	Slot    uint32 `json:"slot"`
	// Pin is the pin that matched the key's address (reason pin).
	Pin *Pin `json:"pin,omitempty"`
	// Rate is the service's rate cap on this node, if it has one.
	Rate *RateState `json:"rate,omitempty"`
	// Ports is set when the service hashes the 5-tuple and no port was
	// given: the answer above is for one representative port.
	Ports *PortSample `json:"ports,omitempty"`
	// L7 is set for a service with match rules: the kernel passes its
	// connections to the agent's L7 proxy, whose first matching rule
	// decides the pool; the answer above is for a connection no rule
	// matches (Why lists the rules).
	L7 bool `json:"l7,omitempty"`
	// Why says all of it in words.
	Why []string `json:"why"`
	// LiveFlows are the client's live flows in the node's flow table (at
	// most LiveFlowsLimit; LiveFlowsTotal counts them all), each with
	// where a new flow with its very key would go now.
	LiveFlows      []LiveFlow `json:"liveFlows"`
	LiveFlowsTotal int        `json:"liveFlowsTotal"`
}

// RateState is a rate cap's token bucket on one node, as the next new
// canary flow would find it.
type RateState struct {
	PerSecond uint32  `json:"perSecond"`
	Burst     uint32  `json:"burst"`
	Tokens    float64 `json:"tokens"`
	// Eligible: the key's bucket is below the weight, so a token decides.
	Eligible bool `json:"eligible"`
}

// PortSample is how a client's source ports split for a service keyed by
// the 5-tuple: Port is the one explained, Sampled ports were asked of the
// kernel, Canary of them went to the canary.
type PortSample struct {
	Port    uint16 `json:"port"`
	Sampled int    `json:"sampled"`
	Canary  int    `json:"canary"`
}

// LiveFlow is one live flow of the client and what a new flow with its
// key would get now; Why says why they differ, if they do.
type LiveFlow struct {
	Client     string `json:"client"`
	Backend    string `json:"backend"`
	Pool       string `json:"pool"`
	State      string `json:"state"`
	NewBackend string `json:"newBackend,omitempty"`
	NewPool    string `json:"newPool,omitempty"`
	Why        string `json:"why"`
}

// Explain asks the agent why client's (IP or IP:PORT) new flows to
// service go where they go, on node: any member of the cluster, which the
// agent asks through the cluster ("": the agent's own).
func (c *Client) Explain(ctx context.Context, service, client, node string) (Explanation, error) {
	q := url.Values{}
	q.Set("client", client)
	if node != "" {
		q.Set("node", node)
	}
	path := "/v1/services/" + url.PathEscape(service) + "/explain?" + q.Encode()
	var out Explanation
	return out, c.do(ctx, http.MethodGet, path, "", nil, &out)
}
