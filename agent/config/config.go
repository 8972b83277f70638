// Package config reads the configuration file of graylane-agent
// (/etc/graylane/agent.yaml): which node this is, which interfaces it
// steers on, where it keeps its state, where it listens, and which cluster
// it belongs to.
//
// Reading is strict: an unknown setting or a value of the wrong form is an
// error naming the file, the line and the setting.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/pkg/exporter"
	"github.com/graylane/graylane/pkg/strictyaml"
)

// Role is what an interface carries.
type Role string

// The roles of an interface.
const (
	// RoleClient carries traffic from clients: it is steered.
	RoleClient Role = "client"
	// RoleBackend carries traffic from backends: their replies.
	RoleBackend Role = "backend"
)

// XDPMode is how the agent attaches its programs to an interface.
type XDPMode string

// The attach modes.
const (
	// XDPModeAuto picks per interface: tc on virtual devices (veth,
	// bridges, tunnels), where native XDP costs more than it saves; native
	// XDP where the driver supports it; tc otherwise.
	XDPModeAuto XDPMode = "auto"
	// XDPModeNative attaches in the driver, and fails where it cannot.
	XDPModeNative XDPMode = "native"
	// XDPModeGeneric attaches in the kernel's generic XDP hook, after the
	// driver has built a socket buffer: slower, but works everywhere.
	XDPModeGeneric XDPMode = "generic"
	// XDPModeTC attaches to the traffic control ingress hook instead of XDP.
	XDPModeTC XDPMode = "tc"
)

// Defaults of the settings a file leaves out.
const (
	DefaultPath      = "/etc/graylane/agent.yaml"
	DefaultXDPMode   = XDPModeAuto
	DefaultBPFFS     = "/sys/fs/bpf/graylane"
	DefaultDataDir   = "/var/lib/graylane"
	DefaultFlowTable = 262144
	// DefaultCaptureRing is 8 MiB.
	DefaultCaptureRing = 8 << 20
	DefaultAPI         = "unix:///run/graylane/api.sock"
	DefaultMetrics     = "127.0.0.1:9477"
	DefaultManifests   = "/etc/graylane/manifests.d"
)

// Bounds of the flow table, in entries.
const (
	MinFlowTable = 1024
	MaxFlowTable = 67108864
	// The capture ring's bounds, in bytes: a page at least, at most 1 GiB.
	MinCaptureRing = 4096
	MaxCaptureRing = 1 << 30
)

// Config is the agent's configuration. The yaml tags are the file's
// spelling of each setting.
type Config struct {
	// Node names this agent in the cluster; the hostname by default.
	Node       string      `yaml:"node"`
	Interfaces []Interface `yaml:"interfaces"`
	XDPMode    XDPMode     `yaml:"xdpMode"`
	// BPFFS is the directory in the BPF file system where the agent pins
	// its maps, so that they outlive a restart.
	BPFFS   string `yaml:"bpffs"`
	DataDir string `yaml:"dataDir"`
	// FlowTable is how many flows the data path tracks at once.
	FlowTable int `yaml:"flowTable"`
	// CaptureRing is the size in bytes of the kernel's capture ring (a
	// power of two): how much a burst of captured packets may run ahead
	// of the agent's reader before packets are dropped (and counted).
	CaptureRing int    `yaml:"captureRing"`
	Listen      Listen `yaml:"listen"`
	// Cluster is nil for a single-node cluster.
	Cluster *Cluster `yaml:"cluster"`
	// Manifests is a manifest file or directory, applied once when the
	// cluster is first created.
	Manifests string `yaml:"manifests"`
	// Tokens are the bearer tokens of the TCP API.
	Tokens []Token `yaml:"tokens"`
	// Webhooks receive the release events this node decides as leader.
	Webhooks []Webhook `yaml:"webhooks"`
	// Metrics tunes what the Prometheus endpoint (listen.metrics) exposes.
	Metrics Metrics `yaml:"metrics"`
	// Gates configures release gates: the commands they may run
	// (gates.go, docs/gates.md).
	Gates Gates `yaml:"gates"`
	// L7 tunes the listener of L7 services (l7.go).
	L7 L7 `yaml:"l7"`
}

// Metrics tunes the metrics the agent exposes.
type Metrics struct {
	// ClassicBuckets are the upper bounds, in seconds, of the classic
	// buckets of every latency histogram, increasing; each service's
	// latency thresholds are added to them. Left out (or null):
	// exporter.DefaultClassicBuckets. docs/metrics.md tells what each
	// costs in series.
	ClassicBuckets []float64 `yaml:"classicBuckets"`
}

// Webhook is a URL that receives release events (JSON POSTs).
type Webhook struct {
	URL string `yaml:"url"`
	// Events are the event kinds it wants (none: all of them).
	Events []string `yaml:"events"`
}

// WebhookEvents are the release event kinds.
var WebhookEvents = []string{"start", "step", "gate", "pause", "resume", "breach", "rollback", "half-open", "healthy-window", "close", "rate-split", "promote", "abort"}

// Interface is a network interface the agent attaches to.
type Interface struct {
	Name string `yaml:"name"`
	Role Role   `yaml:"role"`
}

// Listen holds the addresses the agent serves on.
type Listen struct {
	// API is unix:///path/to/socket (root only; no token needed).
	API string `yaml:"api"`
	// APITCP is an optional host:port for the API over HTTPS (with the
	// cluster's TLS certificate), where a bearer token from Tokens is
	// required.
	APITCP string `yaml:"apiTCP"`
	// Metrics is the host:port of the Prometheus endpoint.
	Metrics string `yaml:"metrics"`
}

// Token grants API access over listen.apiTCP.
type Token struct {
	// Name identifies the token in logs.
	Name string `yaml:"name"`
	// Secret is the bearer token; SecretFile a file holding it (one of
	// the two).
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secretFile"`
	// Tenant limits the token to that tenant's services; "*" is admin.
	Tenant string `yaml:"tenant"`
}

// Cluster says how the agent joins the other nodes. It is kept as written.
type Cluster struct {
	// Raft is the host:port this node's Raft transport listens on.
	Raft string `yaml:"raft"`
	// Join lists the Raft addresses of nodes already in the cluster.
	Join []string `yaml:"join"`
	TLS  TLS      `yaml:"tls"`
	// SnapshotThreshold and TrailingLogs tune raft's log compaction
	// (0: raft's defaults, 8192 and 10240 entries): a member that falls
	// further behind than TrailingLogs catches up from a snapshot.
	SnapshotThreshold int `yaml:"snapshotThreshold"`
	TrailingLogs      int `yaml:"trailingLogs"`
	// SnapshotInterval is how often raft checks SnapshotThreshold, a Go
	// duration such as "2m" ("": raft's default, 120s).
	SnapshotInterval string `yaml:"snapshotInterval"`
	// Voters is how many voters the cluster keeps among its healthy
	// members (0: 5); every other member is a non-voter. The leader's
	// setting counts.
	Voters int `yaml:"voters"`
	// Zone is this node's failure domain ("": none); voters spread over
	// the zones members declare.
	Zone string `yaml:"zone"`
	// Timing is a profile of raft's timeouts: "lan" (a new leader within
	// about a second of a leader's death), "wan" (sites ~150 ms apart) or
	// "" (raft's defaults). The three explicit timeouts, Go durations,
	// override the profile's.
	Timing             string `yaml:"timing"`
	HeartbeatTimeout   string `yaml:"heartbeatTimeout"`
	ElectionTimeout    string `yaml:"electionTimeout"`
	LeaderLeaseTimeout string `yaml:"leaderLeaseTimeout"`
}

// Timeouts are raft's heartbeat, election and leader lease timeouts.
type Timeouts struct {
	Heartbeat, Election, LeaderLease time.Duration
}

// TimingProfile returns the timeouts of a cluster.timing profile (ok
// false for an unknown name). "" is raft's defaults. lan: a follower misses
// the leader after 200–400 ms (raft randomizes between one and two
// heartbeat timeouts), so a new leader and a write come within about a
// second (median 409 ms, max 612 ms over 7 kills on the lab machine:
// BenchmarkClusterLeaderKillLAN in agent/voters_e2e_test.go; raft's
// defaults take 2.1 s by BenchmarkClusterLeaderKill). wan: twice raft's
// defaults, so a 150 ms round trip and a lost packet or two do not start
// an election; the leader's lease as long as the heartbeat timeout: over
// 150 ms the leader hears from a follower only every 350-550 ms, and a
// 1 s lease made half a second's stall anywhere (a busy host) step it
// down (seen once in TestClusterWANTiming). A leader cut off from its
// quorum takes up to 2 s to stop taking writes.
func TimingProfile(name string) (Timeouts, bool) {
	switch name {
	case "":
		return Timeouts{Heartbeat: time.Second, Election: time.Second, LeaderLease: 500 * time.Millisecond}, true
	case "lan":
		return Timeouts{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond}, true
	case "wan":
		return Timeouts{Heartbeat: 2 * time.Second, Election: 2 * time.Second, LeaderLease: 2 * time.Second}, true
	}
	return Timeouts{}, false
}

// Timeouts returns the profile's timeouts with the explicit ones applied.
// Validate has checked them.
func (c *Cluster) Timeouts() Timeouts {
	t, _ := TimingProfile(c.Timing)
	for _, f := range []struct {
		value string
		to    *time.Duration
	}{{c.HeartbeatTimeout, &t.Heartbeat}, {c.ElectionTimeout, &t.Election}, {c.LeaderLeaseTimeout, &t.LeaderLease}} {
		if d, err := time.ParseDuration(f.value); err == nil {
			*f.to = d
		}
	}
	return t
}

// SnapshotEvery is SnapshotInterval parsed (0: the default). Validate
// has checked it.
func (c *Cluster) SnapshotEvery() time.Duration {
	d, _ := time.ParseDuration(c.SnapshotInterval)
	return d
}

// TLS names the files of the cluster's mutual TLS.
type TLS struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Default returns the configuration of a file that sets nothing. It is not
// valid on its own: it has no interfaces.
func Default() *Config {
	node, _ := os.Hostname() // on failure Validate asks for node
	return &Config{
		Node:        node,
		XDPMode:     DefaultXDPMode,
		BPFFS:       DefaultBPFFS,
		DataDir:     DefaultDataDir,
		FlowTable:   DefaultFlowTable,
		CaptureRing: DefaultCaptureRing,
		Listen:      Listen{API: DefaultAPI, Metrics: DefaultMetrics},
		Manifests:   DefaultManifests,
		Metrics:     Metrics{ClassicBuckets: exporter.DefaultClassicBuckets()},
	}
}

// Error is one problem in a config file, at a line. When the problem lies
// in a setting, Err is a *FieldError; errors.As finds it.
type Error = strictyaml.Error

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read agent config: %w (give the right file with --config)", err)
	}
	return Parse(path, data)
}

// Parse reads and validates a config file. name is the file name used in
// error messages. Settings the file leaves out (or sets to null) keep their
// defaults. On error it returns every problem found, joined; each is an
// *Error.
func Parse(name string, data []byte) (*Config, error) {
	c := Default()
	p := &parser{file: name, lines: make(strictyaml.Lines)}
	top, err := p.document(data)
	if err != nil {
		return nil, err
	}
	if top != nil {
		if top.Kind != yaml.MappingNode {
			return nil, &Error{File: name, Line: top.Line,
				Err: fmt.Errorf("the agent config is a mapping of settings, not %s", strictyaml.Describe(top))}
		}
		p.check(top, reflect.TypeFor[Config](), "")
		if len(p.errs) > 0 {
			return nil, errors.Join(p.errs...)
		}
		if err := top.Decode(c); err != nil {
			return nil, &Error{File: name, Line: top.Line, Err: fmt.Errorf("decode agent config: %w", err)}
		}
		if c.Metrics.ClassicBuckets == nil { // set to null: yaml.v3 makes that nil
			c.Metrics.ClassicBuckets = exporter.DefaultClassicBuckets()
		}
	}
	var errs []error
	for _, err := range strictyaml.Leaves(c.Validate()) {
		var fe *FieldError
		line := 0
		if errors.As(err, &fe) {
			line = p.lines.Of(fe.Path) // 0 for a setting the file leaves out
		}
		errs = append(errs, &Error{File: name, Line: line, Err: err})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// parser reads one config file.
type parser struct {
	file  string
	lines strictyaml.Lines // setting path ("listen.api") -> line
	errs  []error
}

// document returns the top node of the file's one YAML document, or nil for
// an empty file.
func (p *parser) document(data []byte) (*yaml.Node, error) {
	tops, err := strictyaml.Documents(p.file, data)
	switch {
	case len(tops) > 1:
		// Reported even when a syntax error follows: it comes first.
		return nil, &Error{File: p.file, Line: tops[1].Line,
			Err: errors.New("a second YAML document: the agent config is one document; remove the ---")}
	case err != nil:
		return nil, err
	case len(tops) == 0:
		return nil, nil
	}
	return tops[0], nil
}

func (p *parser) fail(path string, line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line,
		Err: &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}})
}
