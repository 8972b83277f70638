package service

import (
	"fmt"
	"net/netip"
	"strings"
)

// MatchRule sends a connection whose first request meets its condition to
// Pool (spec.match[i] of a manifest). Exactly one of Header, GRPCMetadata
// and SNI is set. A service's rules are tried in order and the first that
// matches wins; package match evaluates them (match.Decide) and documents
// how each condition compares.
type MatchRule struct {
	Header       *FieldMatch
	GRPCMetadata *FieldMatch
	SNI          *SNIMatch
	Pool         Pool
}

// FieldMatch tests one header (or gRPC metadata) field. Exactly one of
// Value, Prefix and Present is set.
type FieldMatch struct {
	Name    string
	Value   string // the whole value, exactly
	Prefix  string // the value starts with this
	Present bool   // the field is there, whatever its value
}

// SNIMatch tests the TLS server name: an exact host name or, starting
// with "*.", any name under a domain.
type SNIMatch struct {
	Name string
}

// Limits of a service's match rules. The agent tries every rule on every
// new connection it holds, so the list and its strings stay small.
const (
	// MaxMatchRules is how many rules one service may have.
	MaxMatchRules = 64
	// MaxMatchValueBytes bounds a value or prefix.
	MaxMatchValueBytes = 256
	// MaxMatchNameBytes bounds a header or metadata name.
	MaxMatchNameBytes = 128
	// maxHostBytes is the longest DNS name (RFC 1035).
	maxHostBytes = 253
)

// requestPseudo lists the pseudo-headers a header rule may name.
const requestPseudo = ":method, :path, :authority, :scheme"

// CloneMatch returns a deep copy of rules: the conditions are pointers.
func CloneMatch(rules []MatchRule) []MatchRule {
	if rules == nil {
		return nil
	}
	out := make([]MatchRule, len(rules))
	for i, r := range rules {
		if r.Header != nil {
			c := *r.Header
			r.Header = &c
		}
		if r.GRPCMetadata != nil {
			c := *r.GRPCMetadata
			r.GRPCMetadata = &c
		}
		if r.SNI != nil {
			c := *r.SNI
			r.SNI = &c
		}
		out[i] = r
	}
	return out
}

// validateMatch checks spec.match against the service's app and protocol.
// The rules it holds to:
//
//   - at most MaxMatchRules rules, each with exactly one condition and a
//     pool that has backends;
//   - match rules read a TCP stream: protocol udp takes none;
//   - header rules need app http or grpc, grpcMetadata rules app grpc; sni
//     rules take any app (the agent reads the TLS ClientHello);
//   - header names are HTTP tokens of at most MaxMatchNameBytes, or one of
//     the request pseudo-headers :method, :path, :authority and :scheme;
//     metadata keys are lowercase letters, digits and -_. and not binary
//     (-bin: their values are base64 on the wire);
//   - a condition sets exactly one of value, prefix and present; a value
//     or prefix is at most MaxMatchValueBytes, without control characters
//     or a leading or trailing space or tab (readers strip those);
//   - an sni name is a host name, or "*." and a domain of two labels or
//     more; never an IP address;
//   - no rule repeats the condition of an earlier one (it would never
//     apply).
func (s *Service) validateMatch(bad func(string, string, ...any)) {
	if len(s.Match) > MaxMatchRules {
		bad("spec.match", "has %d rules; a service holds at most %d: merge rules or use pins", len(s.Match), MaxMatchRules)
	}
	seen := make(map[string]int, len(s.Match))
	for i, r := range s.Match {
		at := fmt.Sprintf("spec.match[%d]", i)
		s.validateRule(at, r, bad)
		if key := r.key(); key != "" {
			if j, dup := seen[key]; dup {
				bad(at, "repeats the condition of spec.match[%d]; the first match wins, so this rule never applies: remove it", j)
				continue
			}
			seen[key] = i
		}
	}
}

func (s *Service) validateRule(at string, r MatchRule, bad func(string, string, ...any)) {
	if r.Pool != Stable && r.Pool != Canary {
		bad(at+".pool", "%s is not a pool: use stable or canary", r.Pool)
	} else if len(s.Backends(r.Pool)) == 0 {
		bad(at+".pool", "sends matching connections to the %s pool, which has no backends", r.Pool)
	}
	kinds := r.kinds()
	switch {
	case len(kinds) == 0:
		bad(at, "has no condition: set one of header, grpcMetadata or sni")
		return
	case len(kinds) > 1:
		bad(at, "has %s; a rule has exactly one condition: split it into one rule each", strings.Join(kinds, " and "))
		return
	}
	if s.Protocol != TCP && s.Protocol != 0 { // no protocol is reported at spec.protocol
		bad(at+"."+kinds[0], "needs protocol: tcp (the service has protocol: %s); match rules read a TCP stream", s.Protocol)
		return
	}
	switch {
	case r.Header != nil:
		validateHeader(at+".header", s.App, *r.Header, bad)
	case r.GRPCMetadata != nil:
		validateMetadata(at+".grpcMetadata", s.App, *r.GRPCMetadata, bad)
	case r.SNI != nil:
		validateSNI(at+".sni", *r.SNI, bad)
	}
}

// kinds names the conditions a rule sets, in the manifest's spelling.
func (r MatchRule) kinds() []string {
	var kinds []string
	if r.Header != nil {
		kinds = append(kinds, "header")
	}
	if r.GRPCMetadata != nil {
		kinds = append(kinds, "grpcMetadata")
	}
	if r.SNI != nil {
		kinds = append(kinds, "sni")
	}
	return kinds
}

// key spells a rule's condition so that two rules that match the same
// requests get the same key; "" for a rule without exactly one condition.
func (r MatchRule) key() string {
	if len(r.kinds()) != 1 {
		return ""
	}
	switch {
	case r.Header != nil:
		c := r.Header
		return fmt.Sprintf("header %q %q %q %t", strings.ToLower(c.Name), c.Value, c.Prefix, c.Present)
	case r.GRPCMetadata != nil:
		c := r.GRPCMetadata
		return fmt.Sprintf("grpc %q %q %q %t", strings.ToLower(c.Name), c.Value, c.Prefix, c.Present)
	}
	return fmt.Sprintf("sni %q", strings.ToLower(strings.TrimSuffix(r.SNI.Name, ".")))
}

func validateHeader(at string, app App, c FieldMatch, bad func(string, string, ...any)) {
	if app != AppHTTP && app != AppGRPC {
		bad(at, "needs app: http or app: grpc (the service has app: %s); for TLS services match on sni", appName(app))
		return
	}
	switch {
	case c.Name == "":
		bad(at+".name", "is empty: name the header to match, such as X-Canary")
	case len(c.Name) > MaxMatchNameBytes:
		bad(at+".name", "is %d bytes long; a name has at most %d", len(c.Name), MaxMatchNameBytes)
	case strings.HasPrefix(c.Name, ":"):
		if !isRequestPseudo(c.Name) {
			bad(at+".name", "%q is not a request pseudo-header: use one of %s", c.Name, requestPseudo)
		}
	case !isToken(c.Name):
		bad(at+".name", "%q is not a valid header name: use letters, digits and !#$%%&'*+-.^_`|~ only", c.Name)
	}
	validateValue(at, c, bad)
}

func validateMetadata(at string, app App, c FieldMatch, bad func(string, string, ...any)) {
	if app != AppGRPC {
		bad(at, "needs app: grpc (the service has app: %s); for plain HTTP use a header rule", appName(app))
		return
	}
	switch {
	case c.Name == "":
		bad(at+".name", "is empty: name the metadata key to match, such as x-canary")
	case len(c.Name) > MaxMatchNameBytes:
		bad(at+".name", "is %d bytes long; a key has at most %d", len(c.Name), MaxMatchNameBytes)
	case strings.HasPrefix(c.Name, ":"):
		bad(at+".name", "%q is a pseudo-header, not metadata: use a header rule for it", c.Name)
	case c.Name != strings.ToLower(c.Name) && isMetadataKey(strings.ToLower(c.Name)):
		bad(at+".name", "%q has uppercase letters; gRPC metadata keys are lowercase: use %q", c.Name, strings.ToLower(c.Name))
	case !isMetadataKey(c.Name):
		bad(at+".name", "%q is not a valid gRPC metadata key: use lowercase letters, digits and -_. only", c.Name)
	case strings.HasSuffix(c.Name, "-bin"):
		bad(at+".name", "%q is a binary key whose values are base64 on the wire; match a text key instead", c.Name)
	}
	validateValue(at, c, bad)
}

// validateValue checks that exactly one of value, prefix and present is
// set and that the string set is one a request could carry.
func validateValue(at string, c FieldMatch, bad func(string, string, ...any)) {
	var set []string
	if c.Value != "" {
		set = append(set, "value")
	}
	if c.Prefix != "" {
		set = append(set, "prefix")
	}
	if c.Present {
		set = append(set, "present")
	}
	switch len(set) {
	case 0:
		bad(at, "needs one of value, prefix or present: true (an empty value cannot be matched; present: true matches any)")
		return
	case 1:
	default:
		bad(at, "sets both %s; set only one", strings.Join(set, " and "))
		return
	}
	s := c.Value
	if c.Prefix != "" {
		s = c.Prefix
	}
	path := at + "." + set[0]
	switch {
	case len(s) > MaxMatchValueBytes:
		bad(path, "is %d bytes long; at most %d are matched: use a prefix of it", len(s), MaxMatchValueBytes)
	case strings.ContainsFunc(s, isCtl):
		bad(path, "%q contains a control character, which no request value carries", s)
	case s != strings.Trim(s, " \t"):
		bad(path, "%q starts or ends with a space or tab; readers strip those from values, so it never matches", s)
	}
}

func validateSNI(at string, c SNIMatch, bad func(string, string, ...any)) {
	name := strings.TrimSuffix(c.Name, ".")
	host, wildcard := strings.CutPrefix(name, "*.")
	switch {
	case name == "":
		bad(at+".name", "is empty: name the TLS server name to match, such as beta.example.com or *.example.com")
	case len(name) > maxHostBytes:
		bad(at+".name", "is %d bytes long; a host name has at most %d", len(name), maxHostBytes)
	case isIP(host):
		bad(at+".name", "%q is an IP address; TLS clients never send one as server name", c.Name)
	case strings.Contains(host, "*"):
		bad(at+".name", "%q has a misplaced *: a wildcard is only the whole first label, as in *.example.com", c.Name)
	case !isHostName(host):
		bad(at+".name", "%q is not a host name: use labels of letters, digits, - and _ separated by dots", c.Name)
	case wildcard && !strings.Contains(host, "."):
		bad(at+".name", "%q would match names under a top-level domain; name a domain such as *.example.com", c.Name)
	}
}

// appName spells an app as the manifest does: no app is none.
func appName(app App) string {
	if app == "" {
		return string(AppNone)
	}
	return string(app)
}

func isRequestPseudo(name string) bool {
	switch name {
	case ":method", ":path", ":authority", ":scheme":
		return true
	}
	return false
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2),
// such as a header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		alnum := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9'
		if !alnum && strings.IndexByte("!#$%&'*+-.^_`|~", b) < 0 {
			return false
		}
	}
	return true
}

// isMetadataKey reports whether s is a gRPC metadata key: lowercase
// letters, digits, '-', '_' and '.'.
func isMetadataKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		ok := 'a' <= b && b <= 'z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.'
		if !ok {
			return false
		}
	}
	return true
}

func isCtl(r rune) bool {
	return r < 0x20 && r != '\t' || r == 0x7f
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(strings.Trim(s, "[]"))
	return err == nil
}

// isHostName reports whether s is dot-separated labels of 1..63 letters,
// digits, '-' and '_', no label starting or ending with '-'. Underscores
// are allowed because internal names use them and TLS clients send them.
func isHostName(s string) bool {
	if s == "" {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			ok := 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}
