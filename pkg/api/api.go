// Package api is the agent's HTTP API as both sides see it: the request
// and response types, and a client. graylanectl uses the client; the agent
// serves the same paths (agent/apiserver). Every path is under /v1.
//
//	GET    /v1/services                     -> []Service
//	GET    /v1/services/{name}              -> Service
//	POST   /v1/apply        (YAML manifests, all or nothing)      -> Write
//	DELETE /v1/services/{name}                                    -> Write
//	PUT    /v1/services/{name}/weight       WeightRequest         -> Write
//	PUT    /v1/services/{name}/mirror       MirrorRequest         -> Write
//	GET    /v1/services/{name}/capture?percent=P&duration=D&count=N&node=NODE&snaplen=N&payload=true&redact=true
//	                                        -> pcapng stream (application/x-pcapng)
//	GET    /v1/services/{name}/flows?client=IP&limit=N                  -> Flows
//	GET    /v1/services/{name}/explain?client=IP[:PORT]&node=NODE       -> Explanation
//	POST   /v1/services/{name}/pins         PinRequest            -> Write
//	DELETE /v1/services/{name}/pins?prefix=P                      -> Write
//	GET    /v1/members                      -> []Member
//	DELETE /v1/members/{node}                                     -> Write
//	GET    /v1/status[?service=NAME]        -> Status
//	GET    /v1/releases                     -> []Release
//	GET    /v1/releases/{name}              -> Release (with its history)
//	POST   /v1/releases/{name}/{action}     start|pause|resume|promote|abort -> Write
//
// Writes accept ?wait=applied[&timeout=5s]: the answer comes once every live
// member applied the write to its kernel, or says which did not in time.
// Reads accept ?consistent=true for a linearizable read (via the leader).
// Errors are Error with the HTTP status: 400 bad input (the reason names
// the field), 401 no or unknown token, 403 a tenant token on another
// tenant's service, 404 no such service or member, 409 a state conflict,
// 503 no leader (the cluster cannot take writes now). A capture's errors
// are the same JSON Error; its answer, once it is 200, is the pcapng stream.
package api

import (
	"time"
)

// Service is a service's desired state, in the manifest's words.
type Service struct {
	Name     string `json:"name"`
	Tenant   string `json:"tenant"`
	VIP      string `json:"vip"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
	Key      string `json:"key"`
	App      string `json:"app,omitempty"`
	Timeout  string `json:"timeout,omitempty"`
	// IdleTimeout is spec.idleTimeout: a duration, "never", or empty for
	// the protocol's default.
	IdleTimeout       string    `json:"idleTimeout,omitempty"`
	LatencyThresholds []string  `json:"latencyThresholds,omitempty"`
	Stable            []Backend `json:"stable"`
	Canary            []Backend `json:"canary"`
	// Weight is the canary weight, a percentage such as "5%".
	Weight string  `json:"weight"`
	Pins   []Pin   `json:"pins,omitempty"`
	Mirror *Mirror `json:"mirror,omitempty"`
	// Match are spec.match's rules, first match wins.
	Match []MatchRule `json:"match,omitempty"`
}

// MatchRule is one rule of spec.match: one condition and the pool a
// connection that meets it goes to.
type MatchRule struct {
	Header       *FieldMatch `json:"header,omitempty"`
	GRPCMetadata *FieldMatch `json:"grpcMetadata,omitempty"`
	SNI          *SNIMatch   `json:"sni,omitempty"`
	Pool         string      `json:"pool"`
}

// FieldMatch is a header's or a gRPC metadata key's condition: one of an
// exact value, a prefix, or presence.
type FieldMatch struct {
	Name    string `json:"name"`
	Value   string `json:"value,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Present bool   `json:"present,omitempty"`
}

// SNIMatch is a TLS server name: exact, or "*.suffix".
type SNIMatch struct {
	Name string `json:"name"`
}

// Mirror copies a share of a service's whole flows, both directions, as
// the manifest's spec.mirror.
type Mirror struct {
	// Percent is the share of flows copied, such as "1%".
	Percent string `json:"percent"`
	// To is an interface name on every node, or "capture" (the agent's
	// capture ring).
	To string `json:"to"`
	// Snaplen is how many bytes of each copy are kept (0: whole packets).
	Snaplen uint32 `json:"snaplen,omitempty"`
}

// Backend is one backend of a pool.
type Backend struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight,omitempty"`
}

// Pin sends a prefix's new flows to a pool.
type Pin struct {
	Prefix string `json:"prefix"`
	Pool   string `json:"pool"`
}

// WeightRequest sets a service's canary weight ("5", "5%", "0.25%").
type WeightRequest struct {
	Weight string `json:"weight"`
}

// MirrorRequest sets a service's mirroring: Percent ("1", "1%", "0.5%")
// and To, with an optional Snaplen (64..65535 bytes, 0: whole packets);
// or Off alone, which stops it.
type MirrorRequest struct {
	Percent string `json:"percent,omitempty"`
	To      string `json:"to,omitempty"`
	Snaplen uint32 `json:"snaplen,omitempty"`
	Off     bool   `json:"off,omitempty"`
}

// CaptureRequest asks for a pcapng capture of a service's flows, both
// directions. Zero fields are left to the agent's defaults.
type CaptureRequest struct {
	// Percent is the share of new flows sampled ("1%").
	Percent string
	// Duration and Count end the capture: after this long, or after this
	// many packets, whichever comes first.
	Duration time.Duration
	Count    int
	// Node is the name of the node to capture on, or "all".
	Node string
	// Snaplen is how many bytes of each packet are kept; Payload asks for
	// whole packets, payloads included. They exclude each other.
	Snaplen int
	Payload bool
	// Redact replaces the addresses by pseudonyms.
	Redact bool
}

// PinRequest adds (or changes) a pin.
type PinRequest struct {
	Prefix string `json:"prefix"`
	Pool   string `json:"pool"`
}

// Write is the answer to a write: the raft index it was committed at, and,
// with ?wait=applied, which members applied it.
type Write struct {
	Index uint64 `json:"index"`
	// Applied lists the members that applied the write to their kernel
	// (with ?wait=applied).
	Applied []string `json:"applied,omitempty"`
	// NotApplied lists the live members that did not within the timeout.
	NotApplied []string `json:"notApplied,omitempty"`
	// Unreachable lists the members that could not be asked (down or cut
	// off): they apply the write when they are back.
	Unreachable []string `json:"unreachable,omitempty"`
}

// Member is a node of the cluster.
type Member struct {
	Node      string `json:"node"`
	Address   string `json:"address"`
	Leader    bool   `json:"leader"`
	Voter     bool   `json:"voter"`
	Reachable bool   `json:"reachable"`
	// AppliedIndex is the last raft index the node applied to its kernel.
	AppliedIndex uint64 `json:"appliedIndex"`
	// Zone is the failure domain the node declares (cluster.zone).
	Zone string `json:"zone,omitempty"`
	// Healthy is the leader's judgement of the node (in contact, its log
	// current); a non-voter healthy for the stabilization time may be
	// promoted, a voter unhealthy for that long is demoted. Absent from
	// agents that do not judge health (older versions): then neither
	// LastContactMs nor LastIndex is set.
	Healthy *bool `json:"healthy,omitempty"`
	// HealthySince is when the leader last saw Healthy change (absent when
	// the node answering does not lead).
	HealthySince *time.Time `json:"healthySince,omitempty"`
	// LastContactMs is how long ago the node last heard from the leader,
	// in ms (0 for the leader, -1 never or unknown).
	LastContactMs int64 `json:"lastContactMs,omitempty"`
	// LastIndex is the last index in the node's raft log.
	LastIndex uint64 `json:"lastIndex,omitempty"`
}

// Status is the desired and applied state of services, per node.
type Status struct {
	Index    uint64          `json:"index"`
	Services []ServiceStatus `json:"services"`
}

// ServiceStatus is one service on every node.
type ServiceStatus struct {
	Name   string       `json:"name"`
	Weight string       `json:"weight"` // desired
	Nodes  []NodeStatus `json:"nodes"`
}

// NodeStatus is what one node's kernel does for a service.
type NodeStatus struct {
	Node string `json:"node"`
	// Weight is the weight in the node's kernel ("" if the service is not
	// installed there); Error says why a node could not be asked.
	Weight string `json:"weight,omitempty"`
	Error  string `json:"error,omitempty"`
	// MirrorProblem says why the node does not mirror the service as its
	// spec.mirror says (the mirror interface is missing or down there).
	MirrorProblem string `json:"mirrorProblem,omitempty"`
	// Mirror is the service's mirroring as the node does it ("" when
	// off): the share and where copies go; Captures counts the captures
	// of the service running on the node.
	Mirror   string `json:"mirror,omitempty"`
	Captures int    `json:"captures,omitempty"`
	// FlowTableFill is the node's flow table use (entries/capacity, all
	// services together); a table near full evicts live flows.
	FlowTableFill float64 `json:"flowTableFill,omitempty"`
	// FlowEvictionRate is the node's flow table evictions per second
	// over its last window (all services together): confirmed flows the
	// full table dropped to make room, live or not.
	FlowEvictionRate float64 `json:"flowEvictionRate,omitempty"`
	// FlowMissRate is the service's TCP packets per second on the node,
	// over its last window, of connections with no flow entry (evicted or
	// expired): live connections losing their entries (the pools'
	// MissRate summed).
	FlowMissRate float64 `json:"flowMissRate,omitempty"`
	// Pools are the live numbers of the stable and canary pools, over the
	// node's last measurement window.
	Pools []PoolStatus `json:"pools,omitempty"`
	// Match are an L7 service's match rules, in order, with the
	// connections each decided on the node since its agent started;
	// ByWeight counts the connections no rule decided (the pins or the
	// weight did).
	Match    []RuleHits `json:"match,omitempty"`
	ByWeight uint64     `json:"byWeight,omitempty"`
}

// RuleHits is a match rule and the connections it decided.
type RuleHits struct {
	Rule  int    `json:"rule"`  // index in spec.match, from 0
	Match string `json:"match"` // the condition, as "header X-Canary: v2"
	Pool  string `json:"pool"`  // the pool the rule sends to
	Hits  uint64 `json:"hits"`
}

// PoolStatus is a pool's live numbers on a node.
type PoolStatus struct {
	Pool      string        `json:"pool"`
	Backends  []string      `json:"backends"`
	FlowRate  float64       `json:"flowRate"` // new flows per second
	P50       time.Duration `json:"p50"`
	P99       time.Duration `json:"p99"`
	ErrorRate float64       `json:"errorRate"` // errors per response
	// MissRate: TCP packets per second of the pool's live connections
	// that found no flow entry (evicted or expired).
	MissRate float64 `json:"missRate,omitempty"`
	Breaker  string  `json:"breaker,omitempty"`
}

// Error is an error answer.
type Error struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Release is a CanaryRelease and how far it got.
type Release struct {
	Name    string `json:"name"`
	Service string `json:"service"`
	Tenant  string `json:"tenant"`
	// Steps describes each step ("weight 5%, pause 5m0s").
	Steps []string `json:"steps"`
	// Phase is "" (never started), running, paused, promoted or aborted.
	Phase string `json:"phase"`
	// Step is the current step, from 1; Weight the service's canary
	// weight now; StepWeight the weight the steps reached.
	Step       int    `json:"step"`
	Weight     string `json:"weight"`
	StepWeight string `json:"stepWeight"`
	Breaker    string `json:"breaker"`
	// Rate caps new canary flows per second, cluster-wide (0: none).
	Rate       uint32     `json:"rate,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	PauseUntil *time.Time `json:"pauseUntil,omitempty"`
	Holding    bool       `json:"holding,omitempty"`
	// Analysis is the leader's latest judgement of the canary (absent
	// when the answering node could not ask the leader).
	Analysis *Analysis      `json:"analysis,omitempty"`
	History  []ReleaseEvent `json:"history,omitempty"`
}

// Analysis is a judgement of one analysis window, merged over all nodes.
type Analysis struct {
	At        time.Time     `json:"at"`
	Responses uint64        `json:"responses"`
	P99       time.Duration `json:"p99"`
	ErrorRate float64       `json:"errorRate"`
	// Verdict: "no verdict (…)", "healthy", "breach" or "neither".
	Verdict string `json:"verdict"`
	// The stable pool over the same window, for comparison.
	StableResponses uint64        `json:"stableResponses"`
	StableP99       time.Duration `json:"stableP99"`
	StableErrorRate float64       `json:"stableErrorRate"`
}

// ReleaseEvent is one decision in a release's history.
type ReleaseEvent struct {
	At      time.Time          `json:"at"`
	Kind    string             `json:"kind"`
	Step    int                `json:"step"`
	Weight  string             `json:"weight"`
	Message string             `json:"message"`
	Numbers map[string]float64 `json:"numbers,omitempty"`
	Output  string             `json:"output,omitempty"`
}
