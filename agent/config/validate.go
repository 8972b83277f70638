package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/pkg/exporter"
)

// FieldError says which setting is wrong and why. Path uses the file's
// spelling ("listen.api", "interfaces[1].role").
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Msg }

// maxSocketPath is the longest path a unix socket address holds
// (sizeof(sun_path) - 1 on Linux).
const maxSocketPath = 107

var (
	tokenNameRE = regexp.MustCompile(`^[a-z0-9-]{1,63}$`)
	nodeRE      = regexp.MustCompile(`^[A-Za-z0-9._-]{1,253}$`)
	hostnameRE  = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
)

// Validate checks c. It returns every problem found, joined, each a
// *FieldError.
func (c *Config) Validate() error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	c.validateNode(bad)
	c.validateInterfaces(bad)
	c.validateDataPath(bad)
	c.validateAPI(bad)
	c.validateTokens(bad)
	c.validateWebhooks(bad)
	if c.Cluster != nil {
		c.Cluster.validate(bad)
	}
	c.validateMetrics(bad)
	c.validateClassicBuckets(bad)
	c.validateGates(bad)
	c.validateL7(bad)
	return errors.Join(errs...)
}

// reportFunc records one problem with the setting at path.
type reportFunc func(path, format string, args ...any)

func (c *Config) validateNode(bad reportFunc) {
	switch {
	case c.Node == "":
		bad("node", "is required: the hostname could not be read, so set node to this machine's name in the cluster")
	case !nodeRE.MatchString(c.Node):
		bad("node", "%q must be 1 to 253 characters of A-Z, a-z, 0-9, '.', '_' and '-'", c.Node)
	}
}

func (c *Config) validateInterfaces(bad reportFunc) {
	if len(c.Interfaces) == 0 {
		bad("interfaces", "is empty: list the interfaces to attach to, such as {name: eth0, role: client}")
	}
	seen := make(map[string]int, len(c.Interfaces))
	for i, ifc := range c.Interfaces {
		at := fmt.Sprintf("interfaces[%d]", i)
		if msg := interfaceNameProblem(ifc.Name); msg != "" {
			bad(at+".name", "%s", msg)
		} else if j, dup := seen[ifc.Name]; dup {
			bad(at+".name", "%q is listed twice (also at interfaces[%d]): give each interface once, with one role", ifc.Name, j)
		} else {
			seen[ifc.Name] = i
		}
		switch ifc.Role {
		case RoleClient, RoleBackend:
		case "":
			bad(at+".role", "is required: client (traffic from clients) or backend (replies from backends)")
		default:
			bad(at+".role", "%q is not a role: use client (traffic from clients) or backend (replies from backends)", ifc.Role)
		}
	}
}

// validateDataPath checks the attach mode, the directories and the flow
// table's size.
func (c *Config) validateDataPath(bad reportFunc) {
	switch c.XDPMode {
	case XDPModeAuto, XDPModeNative, XDPModeGeneric, XDPModeTC:
	default:
		bad("xdpMode", "%q is not an attach mode: use auto, native, generic or tc", c.XDPMode)
	}
	for _, d := range []struct{ path, value, example string }{
		{"bpffs", c.BPFFS, DefaultBPFFS},
		{"dataDir", c.DataDir, DefaultDataDir},
		{"manifests", c.Manifests, DefaultManifests},
	} {
		switch {
		case d.value == "":
			bad(d.path, "is required: an absolute path such as %s", d.example)
		case !filepath.IsAbs(d.value):
			bad(d.path, "%q is relative: give an absolute path such as %s", d.value, d.example)
		}
	}
	if c.FlowTable < MinFlowTable || c.FlowTable > MaxFlowTable {
		bad("flowTable", "%d is outside %d..%d flow entries", c.FlowTable, MinFlowTable, MaxFlowTable)
	}
	if r := c.CaptureRing; r < MinCaptureRing || r > MaxCaptureRing || r&(r-1) != 0 {
		bad("captureRing", "%d is not a power of two from %d to %d bytes", r, MinCaptureRing, MaxCaptureRing)
	}
}

// validateAPI checks listen.api and listen.apiTCP, and that the TCP API has
// what it needs.
func (c *Config) validateAPI(bad reportFunc) {
	if msg := apiProblem(c.Listen.API); msg != "" {
		bad("listen.api", "%s", msg)
	}
	if c.Listen.APITCP == "" {
		return
	}
	if msg := hostPortProblem(c.Listen.APITCP); msg != "" {
		bad("listen.apiTCP", "%s", msg)
	}
	if c.Cluster == nil || c.Cluster.TLS.Cert == "" {
		bad("listen.apiTCP", "needs cluster.tls: the HTTPS API uses the node's certificate")
	}
	if len(c.Tokens) == 0 {
		bad("tokens", "is empty but listen.apiTCP is set: give at least one token, or nobody can use the TCP API")
	}
}

func (c *Config) validateTokens(bad reportFunc) {
	names := map[string]int{}
	for i, tk := range c.Tokens {
		at := fmt.Sprintf("tokens[%d]", i)
		if !tokenNameRE.MatchString(tk.Name) {
			bad(at+".name", "%q must be 1 to 63 characters of a-z, 0-9 and -", tk.Name)
		} else if j, dup := names[tk.Name]; dup {
			bad(at+".name", "%q is used twice (also at tokens[%d])", tk.Name, j)
		} else {
			names[tk.Name] = i
		}
		switch {
		case tk.Secret == "" && tk.SecretFile == "":
			bad(at, "needs secret or secretFile")
		case tk.Secret != "" && tk.SecretFile != "":
			bad(at, "has both secret and secretFile: give one")
		case tk.Secret != "" && len(tk.Secret) < 16:
			bad(at+".secret", "is shorter than 16 characters: use a long random string")
		case tk.SecretFile != "" && !filepath.IsAbs(tk.SecretFile):
			bad(at+".secretFile", "%q is relative: give an absolute path", tk.SecretFile)
		}
		if tk.Tenant != "*" && !tokenNameRE.MatchString(tk.Tenant) {
			bad(at+".tenant", "%q: give a tenant name, or \"*\" for an admin token", tk.Tenant)
		}
	}
}

func (c *Config) validateWebhooks(bad reportFunc) {
	for i, w := range c.Webhooks {
		at := fmt.Sprintf("webhooks[%d]", i)
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(at+".url", "%q: give an http:// or https:// URL", w.URL)
		}
		for k, e := range w.Events {
			if !slices.Contains(WebhookEvents, e) {
				bad(fmt.Sprintf("%s.events[%d]", at, k), "%q is not an event: use %s", e, strings.Join(WebhookEvents, ", "))
			}
		}
	}
}

// validate checks the cluster section: addresses, snapshot settings and the
// TLS files.
func (cl *Cluster) validate(bad reportFunc) {
	if cl.Raft == "" {
		bad("cluster.raft", "is required: this node's cluster address host:port, as the other nodes reach it")
	} else if msg := hostPortProblem(cl.Raft); msg != "" {
		bad("cluster.raft", "%s", msg)
	}
	if cl.SnapshotThreshold < 0 {
		bad("cluster.snapshotThreshold", "%d must be positive (or 0 for the default)", cl.SnapshotThreshold)
	}
	if cl.TrailingLogs < 0 {
		bad("cluster.trailingLogs", "%d must be positive (or 0 for the default)", cl.TrailingLogs)
	}
	if cl.SnapshotInterval != "" {
		if d, err := time.ParseDuration(cl.SnapshotInterval); err != nil || d < time.Second {
			bad("cluster.snapshotInterval", "%q: give a duration of at least 1s, such as \"2m\"", cl.SnapshotInterval)
		}
	}
	cl.validateVoters(bad)
	cl.validateTiming(bad)
	for i, j := range cl.Join {
		if msg := hostPortProblem(j); msg != "" {
			bad(fmt.Sprintf("cluster.join[%d]", i), "%s", msg)
		}
	}
	for _, f := range []struct{ path, value string }{{"cluster.tls.ca", cl.TLS.CA}, {"cluster.tls.cert", cl.TLS.Cert}, {"cluster.tls.key", cl.TLS.Key}} {
		switch {
		case f.value == "":
			bad(f.path, "is required: the cluster port uses mutual TLS (graylane-agent certs makes a lab set)")
		case !filepath.IsAbs(f.value):
			bad(f.path, "%q is relative: give an absolute path", f.value)
		}
	}
}

// maxVoters bounds cluster.voters: more voters slow every commit and
// election, and add no safety a fleet needs.
const maxVoters = 9

var zoneRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

func (cl *Cluster) validateVoters(bad reportFunc) {
	if cl.Voters < 0 || cl.Voters > maxVoters {
		bad("cluster.voters", "%d is outside 1..%d (or 0 for the default, 5): an odd number such as 3 or 5", cl.Voters, maxVoters)
	}
	if cl.Zone != "" && !zoneRE.MatchString(cl.Zone) {
		bad("cluster.zone", "%q is not a zone name: use up to 63 letters, digits, '.', '_' or '-'", cl.Zone)
	}
}

// minTimeout is the shortest raft timeout taken: raft refuses under 5 ms,
// and shorter than a scheduling hiccup means elections for nothing.
const minTimeout = 10 * time.Millisecond

// validateTiming checks cluster.timing and the explicit timeouts, then
// that the resulting ones keep lease <= heartbeat <= election (raft's
// rule for the lease; an election timeout shorter than the heartbeat's
// would start elections before a follower could miss a leader).
func (cl *Cluster) validateTiming(bad reportFunc) {
	if _, ok := TimingProfile(cl.Timing); !ok {
		bad("cluster.timing", "%q is not a timing profile: use lan or wan (or set heartbeatTimeout, electionTimeout and leaderLeaseTimeout)", cl.Timing)
		return
	}
	ok := true
	for _, f := range []struct{ path, value string }{
		{"cluster.heartbeatTimeout", cl.HeartbeatTimeout}, {"cluster.electionTimeout", cl.ElectionTimeout},
		{"cluster.leaderLeaseTimeout", cl.LeaderLeaseTimeout},
	} {
		if f.value == "" {
			continue
		}
		if d, err := time.ParseDuration(f.value); err != nil || d < minTimeout || d > time.Minute {
			bad(f.path, "%q: give a duration from %v to 1m, such as \"500ms\"", f.value, minTimeout)
			ok = false
		}
	}
	if !ok {
		return
	}
	t, profile := cl.Timeouts(), cl.Timing
	if profile == "" {
		profile = "raft's defaults"
	}
	if t.LeaderLease > t.Heartbeat {
		bad("cluster.leaderLeaseTimeout", "%v is longer than cluster.heartbeatTimeout %v (timing %s): the lease must not exceed the heartbeat timeout", t.LeaderLease, t.Heartbeat, profile)
	}
	if t.Heartbeat > t.Election {
		bad("cluster.heartbeatTimeout", "%v is longer than cluster.electionTimeout %v (timing %s): the heartbeat timeout must not exceed the election timeout", t.Heartbeat, t.Election, profile)
	}
}

func (c *Config) validateMetrics(bad reportFunc) {
	if c.Listen.Metrics == "" {
		bad("listen.metrics", "is required: a host:port such as %s", DefaultMetrics)
	} else if msg := hostPortProblem(c.Listen.Metrics); msg != "" {
		bad("listen.metrics", "%s", msg)
	}
}

// validateClassicBuckets checks metrics.classicBuckets by the exporter's
// rules: positive, finite, increasing, 1 µs to 256 s, at most 64 bounds.
func (c *Config) validateClassicBuckets(bad reportFunc) {
	at, problem := exporter.ClassicBoundsProblem(c.Metrics.ClassicBuckets)
	switch {
	case problem == "":
	case at < 0:
		bad("metrics.classicBuckets", "%s", problem)
	default:
		bad(fmt.Sprintf("metrics.classicBuckets[%d]", at), "%s", problem)
	}
}

// interfaceNameProblem says what is wrong with a network interface name, by
// the kernel's rules (dev_valid_name), or returns "".
func interfaceNameProblem(name string) string {
	switch {
	case name == "":
		return "is required: the name of a network interface, such as eth0"
	case len(name) > 15 || name == "." || name == ".." ||
		strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || r <= ' ' || r == 0x7f }):
		return fmt.Sprintf("%q is not a network interface name: at most 15 characters, without '/', ':' or spaces", name)
	}
	return ""
}

// apiProblem says what is wrong with an API address, or returns "".
func apiProblem(addr string) string {
	const forms = "use unix:///path/to/api.sock or https://host:port"
	if addr == "" {
		return "is required: " + forms
	}
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		switch {
		case !filepath.IsAbs(path):
			return fmt.Sprintf("%q: the socket path must be absolute, as in %s (three slashes)", addr, DefaultAPI)
		case len(path) > maxSocketPath:
			return fmt.Sprintf("%q: the socket path is longer than %d bytes, the most a unix socket address holds", addr, maxSocketPath)
		}
		return ""
	}
	if hostPort, ok := strings.CutPrefix(addr, "https://"); ok {
		if msg := hostPortProblem(hostPort); msg != "" {
			return fmt.Sprintf("%q: %s", addr, msg)
		}
		return ""
	}
	return fmt.Sprintf("%q is not an API address: %s", addr, forms)
}

// hostPortProblem says what is wrong with a TCP listen address, or returns
// "". An empty host means every address of the node.
func hostPortProblem(hostPort string) string {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Sprintf("%q is not a host:port such as 127.0.0.1:9477 or [::1]:9477", hostPort)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("%q has no valid port: use a number from 1 to 65535", hostPort)
	}
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	// A name whose last label is a number is a mistyped IPv4 address.
	last := host[strings.LastIndexByte(host, '.')+1:]
	if len(host) > 253 || !hostnameRE.MatchString(host) || strings.Trim(last, "0123456789") == "" {
		return fmt.Sprintf("%q: %q is neither an IP address nor a host name", hostPort, host)
	}
	return ""
}
