// Package match evaluates a service's spec.match rules: which pool a
// connection goes to, judged on what the agent read of its first request
// (HTTP/1.x or HTTP/2 headers, gRPC metadata) or of its TLS ClientHello
// (the server name). The agent holds a new connection, reads only that
// much, asks Decide, and only then picks a backend.
//
// The rules are service.MatchRule, part of the desired state;
// service.Service.Validate rejects what is said below to be rejected, and
// enforces the limits (service.MaxMatchRules and the like).
//
// Decisions documented here, relied on by the agent and the manifest:
//
//   - A rule has exactly one condition. There is no AND: rules are tried in
//     order and the first that matches wins; no rule matching leaves the
//     connection to the pins and the weight.
//   - The decision is made once per connection, on its first request. Later
//     requests on the same connection (keep-alive, pipelined, HTTP/2 streams,
//     an upgraded websocket or h2c connection) go where the first one went.
//   - Header names are compared case-insensitively. A header that appears
//     several times matches when any one of its values matches. A value is
//     matched as one whole field line: "v1, v2" is not split on commas.
//   - value is an exact, case-sensitive comparison; prefix a case-sensitive
//     byte prefix; present: true matches any value, even an empty one. An
//     empty value cannot be matched on its own; use present: true.
//   - Header rules may name the request pseudo-headers :method, :path,
//     :authority and :scheme. For HTTP/1.x the agent fills them from the
//     request line and the Host header, so a :path prefix rule works for both
//     HTTP versions. Other pseudo-headers (:status, :protocol) are rejected.
//   - grpcMetadata rules match only requests that are gRPC (HTTP/2 with
//     content-type application/grpc). Keys are lowercase, as gRPC sends
//     them; binary keys (ending in -bin) are rejected because their values
//     are base64 on the wire.
//   - An sni rule compares the TLS server name case-insensitively, ignoring
//     one trailing dot. "*.example.com" matches a name with one or more
//     labels before example.com (a.example.com, a.b.example.com) but not
//     example.com itself. Header rules never match a TLS connection: the
//     agent does not terminate TLS.
package match

import (
	"strings"

	"github.com/graylane/graylane/pkg/service"
)

// Request is what the agent read of a connection's first request.
type Request struct {
	// Headers maps field names to their values in the order received.
	// Names are matched case-insensitively; HTTP/2 pseudo-headers are keys
	// too (":path"), and for HTTP/1.x the reader of the request sets
	// ":method", ":path", ":authority" and ":scheme" itself.
	Headers map[string][]string
	// GRPC is true for an HTTP/2 request with content-type application/grpc
	// (or application/grpc+proto and the like).
	GRPC bool
	// SNI is the server name of a TLS ClientHello; empty when there was
	// none or the connection is not TLS.
	SNI string
}

// Decide returns the pool of the first rule that req matches, and that
// rule's index. ok is false when no rule matches; the caller then falls
// back to the pins and the weight.
func Decide(rules []service.MatchRule, req Request) (pool service.Pool, ruleIndex int, ok bool) {
	for i, r := range rules {
		if matches(r, req) {
			return r.Pool, i, true
		}
	}
	return service.Stable, -1, false
}

// matches reports whether req meets r's condition. A rule without exactly
// one condition, which Service.Validate rejects, matches by its first.
func matches(r service.MatchRule, req Request) bool {
	switch {
	case r.Header != nil:
		return fieldMatches(*r.Header, req.Headers)
	case r.GRPCMetadata != nil:
		return req.GRPC && fieldMatches(*r.GRPCMetadata, req.Headers)
	case r.SNI != nil:
		return sniMatches(*r.SNI, req.SNI)
	}
	return false
}

func fieldMatches(c service.FieldMatch, headers map[string][]string) bool {
	for name, values := range headers {
		if !strings.EqualFold(name, c.Name) {
			continue
		}
		for _, v := range values {
			if valueMatches(c, v) {
				return true
			}
		}
	}
	return false
}

func valueMatches(c service.FieldMatch, v string) bool {
	switch {
	case c.Present:
		return true
	case c.Prefix != "":
		return strings.HasPrefix(v, c.Prefix)
	case c.Value != "":
		return v == c.Value
	}
	return false
}

func sniMatches(c service.SNIMatch, serverName string) bool {
	name := normalHost(serverName)
	if name == "" {
		return false
	}
	pattern := normalHost(c.Name)
	if suffix, ok := strings.CutPrefix(pattern, "*."); ok {
		return len(name) > len(suffix)+1 && strings.HasSuffix(name, "."+suffix)
	}
	return name == pattern
}

// normalHost lowercases a host name and drops one trailing dot.
func normalHost(s string) string {
	return strings.ToLower(strings.TrimSuffix(s, "."))
}
