package config

import (
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/exporter"
	"github.com/graylane/graylane/pkg/strictyaml"
)

func TestDefault(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Skipf("no hostname to compare with: %v", err)
	}
	want := &Config{
		Node:        host,
		XDPMode:     XDPModeAuto,
		BPFFS:       "/sys/fs/bpf/graylane",
		DataDir:     "/var/lib/graylane",
		FlowTable:   262144,
		CaptureRing: 8 << 20,
		Listen:      Listen{API: "unix:///run/graylane/api.sock", Metrics: "127.0.0.1:9477"},
		Manifests:   "/etc/graylane/manifests.d",
		Metrics:     Metrics{ClassicBuckets: exporter.DefaultClassicBuckets()},
	}
	if got := Default(); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() = %+v, want %+v", got, want)
	}
}

func TestParseMinimal(t *testing.T) {
	for _, in := range []string{
		"interfaces: [{name: eth0, role: client}]\n",
		// null keeps the default
		"node: ~\ninterfaces: [{name: eth0, role: client}]\nlisten:\nflowTable:\ncluster: ~\n---\n",
		"interfaces: [{name: eth0, role: client}]\nmetrics: ~\n",
		"interfaces: [{name: eth0, role: client}]\nmetrics: {classicBuckets: ~}\n",
	} {
		got, err := Parse("agent.yaml", []byte(in))
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		want := Default()
		want.Interfaces = []Interface{{Name: "eth0", Role: RoleClient}}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Parse(%q) = %+v, want %+v", in, got, want)
		}
	}
}

func TestLoad(t *testing.T) {
	got, err := Load("testdata/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Node: "gw-1",
		Interfaces: []Interface{
			{Name: "eth0", Role: RoleClient},
			{Name: "eth1", Role: RoleBackend},
		},
		XDPMode:     XDPModeAuto,
		BPFFS:       "/sys/fs/bpf/graylane",
		DataDir:     "/var/lib/graylane",
		FlowTable:   262144,
		CaptureRing: 8 << 20,
		Listen:      Listen{API: "unix:///run/graylane/api.sock", Metrics: "127.0.0.1:9477"},
		Cluster: &Cluster{
			Raft: "10.0.0.1:7071",
			Join: []string{"10.0.0.2:7071", "10.0.0.3:7071"},
			TLS:  TLS{CA: "/etc/graylane/ca.pem", Cert: "/etc/graylane/gw-1.pem", Key: "/etc/graylane/gw-1-key.pem"},
		},
		Manifests: "/etc/graylane/manifests.d",
		Metrics:   Metrics{ClassicBuckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load = %+v, want %+v", got, want)
	}

	_, err = Load("testdata/missing.yaml")
	if err == nil || !strings.Contains(err.Error(), "--config") || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error %v, want one wrapping ErrNotExist and naming --config", err)
	}
}

func TestParseSettings(t *testing.T) {
	const ifc = "interfaces: [{name: eth0, role: client}]\n"
	tests := []struct {
		in    string
		check func(*Config) bool
	}{
		{"xdpMode: native\n", func(c *Config) bool { return c.XDPMode == XDPModeNative }},
		{"xdpMode: generic\n", func(c *Config) bool { return c.XDPMode == XDPModeGeneric }},
		{"xdpMode: tc\n", func(c *Config) bool { return c.XDPMode == XDPModeTC }},
		{"flowTable: 1024\n", func(c *Config) bool { return c.FlowTable == MinFlowTable }},
		{"flowTable: 67108864\n", func(c *Config) bool { return c.FlowTable == MaxFlowTable }},
		{"flowTable: 0x10000\n", func(c *Config) bool { return c.FlowTable == 65536 }},
		{"captureRing: 65536\n", func(c *Config) bool { return c.CaptureRing == 65536 }},
		{"node: GW-1.example.com\n", func(c *Config) bool { return c.Node == "GW-1.example.com" }},
		{"node: 42\n", func(c *Config) bool { return c.Node == "42" }},
		{"listen: {api: 'https://10.0.0.1:8443'}\n", func(c *Config) bool {
			return c.Listen.API == "https://10.0.0.1:8443" && c.Listen.Metrics == DefaultMetrics
		}},
		{"listen: {api: 'https://[2001:db8::1]:8443', metrics: ':9477'}\n", func(c *Config) bool { return c.Listen.Metrics == ":9477" }},
		{"listen: {api: 'https://gw-1.example.com:8443', metrics: '[::1]:9477'}\n", func(c *Config) bool { return c.Listen.Metrics == "[::1]:9477" }},
		{"listen: {metrics: 'localhost:9477'}\n", func(c *Config) bool { return c.Listen.Metrics == "localhost:9477" }},
		{"listen: {metrics: '[fe80::1%eth0]:9477'}\n", func(c *Config) bool { return c.Listen.Metrics == "[fe80::1%eth0]:9477" }},
		{"cluster: {raft: '10.0.0.1:7071', tls: {ca: /a.pem, cert: /b.pem, key: /c.pem}}\n", func(c *Config) bool { return c.Cluster != nil && c.Cluster.Raft == "10.0.0.1:7071" }},
		{"listen: {apiTCP: '10.0.0.1:7443'}\ncluster: {raft: '10.0.0.1:7071', tls: {ca: /a.pem, cert: /b.pem, key: /c.pem}}\ntokens: [{name: ops, secret: 0123456789abcdef0123, tenant: '*'}]\n", func(c *Config) bool { return c.Listen.APITCP == "10.0.0.1:7443" && c.Tokens[0].Tenant == "*" }},
		{"manifests: /srv/graylane/auth.yaml\n", func(c *Config) bool { return c.Manifests == "/srv/graylane/auth.yaml" }},
		{"metrics: {classicBuckets: [0.005, 1e-2, 1, 30]}\n", func(c *Config) bool {
			return slices.Equal(c.Metrics.ClassicBuckets, []float64{0.005, 0.01, 1, 30})
		}},
		{"metrics:\n  classicBuckets:\n    - 0.000001\n    - 256\n", func(c *Config) bool {
			return slices.Equal(c.Metrics.ClassicBuckets, []float64{1e-6, 256})
		}},
	}
	for _, tt := range tests {
		c, err := Parse("agent.yaml", []byte(ifc+tt.in))
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if !tt.check(c) {
			t.Errorf("Parse(%q) = %+v: not as expected", tt.in, c)
		}
	}
}

func TestParseErrors(t *testing.T) {
	const ifc = "interfaces: [{name: eth0, role: client}]\n"
	tests := []struct {
		name string
		in   string
		want []string // one substring per error, in order
	}{
		{"empty file", "", []string{"agent.yaml: interfaces: is empty"}},
		{"no interfaces", "node: gw-1\ninterfaces: []\n", []string{"agent.yaml:2: interfaces: is empty"}},
		{"interfaces a mapping", "interfaces: {eth0: client}\n", []string{"agent.yaml:1: interfaces: must be a list, not a mapping"}},
		{"interface null", "interfaces: [~]\n", []string{"agent.yaml:1: interfaces[0]: is empty"}},
		{"interface twice", "interfaces:\n  - {name: eth0, role: client}\n  - {name: eth0, role: backend}\n",
			[]string{`agent.yaml:3: interfaces[1].name: "eth0" is listed twice (also at interfaces[0])`}},
		{"interface without name", "interfaces: [{role: client}]\n", []string{"agent.yaml:1: interfaces[0].name: is required"}},
		{"interface name too long", "interfaces: [{name: eth0123456789012, role: client}]\n",
			[]string{`interfaces[0].name: "eth0123456789012" is not a network interface name`}},
		{"interface name with slash", "interfaces: [{name: eth0/1, role: client}]\n",
			[]string{`interfaces[0].name: "eth0/1" is not a network interface name`}},
		{"interface alias", "interfaces: [{name: 'eth0:1', role: client}]\n",
			[]string{`interfaces[0].name: "eth0:1" is not a network interface name`}},
		{"role missing", "interfaces:\n  - name: eth0\n", []string{"agent.yaml:2: interfaces[0].role: is required"}},
		{"role unknown", "interfaces:\n  - name: eth0\n    role: server\n",
			[]string{`agent.yaml:3: interfaces[0].role: "server" is not a role: use client`}},
		{"role upper case", "interfaces: [{name: eth0, role: Client}]\n", []string{`interfaces[0].role: "Client" is not a role`}},
		{"mode unknown", ifc + "xdpMode: offload\n", []string{`agent.yaml:2: xdpMode: "offload" is not an attach mode: use auto, native, generic or tc`}},
		{"mode empty", ifc + "xdpMode: ''\n", []string{`agent.yaml:2: xdpMode: "" is not an attach mode`}},
		{"flow table too small", ifc + "flowTable: 1023\n", []string{"agent.yaml:2: flowTable: 1023 is outside 1024..67108864 flow entries"}},
		{"flow table too big", ifc + "flowTable: 67108865\n", []string{"agent.yaml:2: flowTable: 67108865 is outside 1024..67108864"}},
		{"flow table zero", ifc + "flowTable: 0\n", []string{"flowTable: 0 is outside"}},
		{"flow table negative", ifc + "flowTable: -1\n", []string{"flowTable: -1 is outside"}},
		{"capture ring not a power of two", ifc + "captureRing: 100000\n", []string{"agent.yaml:2: captureRing: 100000 is not a power of two from 4096 to 1073741824 bytes"}},
		{"capture ring too small", ifc + "captureRing: 2048\n", []string{"captureRing: 2048 is not a power of two"}},
		{"cluster without raft or tls", ifc + "cluster: {}\n", []string{"cluster.raft: is required", "cluster.tls.ca: is required", "cluster.tls.cert: is required", "cluster.tls.key: is required"}},
		{"bad webhooks", ifc + "webhooks: [{url: 'ftp://x'}, {url: 'https://hooks.example/g', events: [rollback, explode]}]\n",
			[]string{`webhooks[0].url: "ftp://x": give an http:// or https:// URL`, `webhooks[1].events[1]: "explode" is not an event`}},
		{"cluster bad snapshot tuning", ifc + "cluster: {raft: '10.0.0.1:7071', snapshotThreshold: -1, snapshotInterval: 10ms, tls: {ca: /a, cert: /b, key: /c}}\n",
			[]string{"cluster.snapshotThreshold: -1 must be positive", `cluster.snapshotInterval: "10ms": give a duration of at least 1s`}},
		{"cluster timing unknown", ifc + "cluster: {raft: '10.0.0.1:7071', timing: lan2, tls: {ca: /a, cert: /b, key: /c}}\n",
			[]string{`cluster.timing: "lan2" is not a timing profile: use lan or wan`}},
		{"cluster timeout not a duration", ifc + "cluster: {raft: '10.0.0.1:7071', heartbeatTimeout: soon, electionTimeout: 1ms, tls: {ca: /a, cert: /b, key: /c}}\n",
			[]string{`cluster.heartbeatTimeout: "soon": give a duration from 10ms to 1m`, `cluster.electionTimeout: "1ms": give a duration`}},
		{"cluster lease longer than heartbeat", ifc + "cluster: {raft: '10.0.0.1:7071', timing: lan, leaderLeaseTimeout: 300ms, tls: {ca: /a, cert: /b, key: /c}}\n",
			[]string{"cluster.leaderLeaseTimeout: 300ms is longer than cluster.heartbeatTimeout 200ms (timing lan)"}},
		{"cluster heartbeat longer than election", ifc + "cluster: {raft: '10.0.0.1:7071', heartbeatTimeout: 3s, tls: {ca: /a, cert: /b, key: /c}}\n",
			[]string{"cluster.heartbeatTimeout: 3s is longer than cluster.electionTimeout 1s (timing raft's defaults)"}},
		{"cluster voters and zone", ifc + "cluster: {raft: '10.0.0.1:7071', voters: 11, zone: 'site a', tls: {ca: /a, cert: /b, key: /c}}\n",
			[]string{"cluster.voters: 11 is outside 1..9", `cluster.zone: "site a" is not a zone name`}},
		{"cluster bad join", ifc + "cluster: {raft: '10.0.0.1:7071', join: [nowhere], tls: {ca: /a, cert: /b, key: /c}}\n", []string{"cluster.join[0]:"}},
		{"api tcp without tls and tokens", ifc + "listen: {apiTCP: '0.0.0.0:7443'}\n", []string{"listen.apiTCP: needs cluster.tls", "tokens: is empty but listen.apiTCP is set"}},
		{"token short secret", ifc + "tokens: [{name: ops, secret: short, tenant: '*'}]\n", []string{"tokens[0].secret: is shorter than 16"}},
		{"token no secret", ifc + "tokens: [{name: ops, tenant: team-a}]\n", []string{"tokens[0]: needs secret or secretFile"}},
		{"token bad tenant", ifc + "tokens: [{name: ops, secret: 0123456789abcdef0, tenant: 'Team A'}]\n", []string{"tokens[0].tenant:"}},
		{"flow table not a number", ifc + "flowTable: many\n", []string{`agent.yaml:2: flowTable: must be a whole number, not the single value "many"`}},
		{"flow table float", ifc + "flowTable: 1.5e6\n", []string{"flowTable: must be a whole number"}},
		{"flow table huge", ifc + "flowTable: 99999999999999999999\n", []string{"flowTable: must be a whole number"}},
		{"flow table quoted", ifc + "flowTable: '262144'\n", []string{"flowTable: must be a whole number"}},
		{"bpffs relative", ifc + "bpffs: sys/fs/bpf/graylane\n", []string{`agent.yaml:2: bpffs: "sys/fs/bpf/graylane" is relative: give an absolute path such as /sys/fs/bpf/graylane`}},
		{"bpffs empty", ifc + "bpffs: ''\n", []string{"agent.yaml:2: bpffs: is required"}},
		{"bpffs a list", ifc + "bpffs: [/sys/fs/bpf]\n", []string{"agent.yaml:2: bpffs: must be a single value, not a list"}},
		{"data dir relative", ifc + "dataDir: ./state\n", []string{`dataDir: "./state" is relative`}},
		{"manifests relative", ifc + "manifests: manifests.d\n", []string{`manifests: "manifests.d" is relative`}},
		{"api tcp", ifc + "listen: {api: 'tcp://0.0.0.0:8443'}\n",
			[]string{`agent.yaml:2: listen.api: "tcp://0.0.0.0:8443" is not an API address: use unix:///path/to/api.sock or https://host:port`}},
		{"api bare path", ifc + "listen: {api: /run/graylane/api.sock}\n", []string{"listen.api: \"/run/graylane/api.sock\" is not an API address"}},
		{"api relative socket", ifc + "listen: {api: 'unix://run/graylane/api.sock'}\n",
			[]string{`listen.api: "unix://run/graylane/api.sock": the socket path must be absolute, as in unix:///run/graylane/api.sock`}},
		{"api socket too long", ifc + "listen: {api: 'unix:///" + strings.Repeat("a", 107) + "'}\n",
			[]string{"the socket path is longer than 107 bytes"}},
		{"api https without port", ifc + "listen: {api: 'https://gw-1'}\n", []string{`listen.api: "https://gw-1": "gw-1" is not a host:port`}},
		{"api https port 0", ifc + "listen: {api: 'https://:0'}\n", []string{`listen.api: "https://:0": ":0" has no valid port`}},
		{"api https with path", ifc + "listen: {api: 'https://gw-1:8443/api'}\n", []string{`listen.api: "https://gw-1:8443/api"`}},
		{"api empty", ifc + "listen: {api: ''}\n", []string{"listen.api: is required"}},
		{"metrics port only", ifc + "listen:\n  metrics: 9477\n", []string{`agent.yaml:3: listen.metrics: "9477" is not a host:port`}},
		{"metrics named port", ifc + "listen: {metrics: 'localhost:prom'}\n", []string{`listen.metrics: "localhost:prom" has no valid port`}},
		{"metrics port too big", ifc + "listen: {metrics: '127.0.0.1:65536'}\n", []string{`listen.metrics: "127.0.0.1:65536" has no valid port`}},
		{"metrics bad IPv4", ifc + "listen: {metrics: '10.0.0.300:9477'}\n", []string{`listen.metrics: "10.0.0.300:9477": "10.0.0.300" is neither an IP address nor a host name`}},
		{"metrics bad host", ifc + "listen: {metrics: 'gw_1:9477'}\n", []string{`"gw_1" is neither an IP address nor a host name`}},
		{"metrics empty", ifc + "listen: {metrics: ''}\n", []string{"listen.metrics: is required"}},
		{"classic buckets decreasing", ifc + "metrics:\n  classicBuckets: [0.1, 0.05]\n",
			[]string{"agent.yaml:3: metrics.classicBuckets[1]: 0.05 is not above the bound before it (0.1): list the bounds in increasing order"}},
		{"classic buckets on lines", ifc + "metrics:\n  classicBuckets:\n    - 0.1\n    - -1\n", []string{"agent.yaml:5: metrics.classicBuckets[1]: -1 must be positive"}},
		{"classic buckets zero", ifc + "metrics: {classicBuckets: [0]}\n", []string{"metrics.classicBuckets[0]: 0 must be positive"}},
		{"classic buckets infinite", ifc + "metrics: {classicBuckets: [1, .inf]}\n", []string{"metrics.classicBuckets[1]: +Inf is not a number of seconds"}},
		{"classic buckets NaN", ifc + "metrics: {classicBuckets: [.nan]}\n", []string{"metrics.classicBuckets[0]: NaN is not a number of seconds"}},
		{"classic buckets too long", ifc + "metrics: {classicBuckets: [300]}\n", []string{"metrics.classicBuckets[0]: 300 is above 256"}},
		{"classic buckets too short", ifc + "metrics: {classicBuckets: [1e-9]}\n", []string{"metrics.classicBuckets[0]: 1e-09 is below 1e-06"}},
		{"classic buckets empty", ifc + "metrics: {classicBuckets: []}\n", []string{"agent.yaml:2: metrics.classicBuckets: is empty: leave it out for the default layout"}},
		{"classic buckets too many", ifc + "metrics: {classicBuckets: [" + strings.Repeat("1, ", 65) + "]}\n", []string{"metrics.classicBuckets: has 65 bounds, more than 64"}},
		{"classic buckets not numbers", ifc + "metrics: {classicBuckets: [fast, '0.1']}\n",
			[]string{`metrics.classicBuckets[0]: must be a number, not the single value "fast"`, "metrics.classicBuckets[1]: must be a number"}},
		{"classic buckets a number", ifc + "metrics: {classicBuckets: 0.1}\n", []string{"metrics.classicBuckets: must be a list"}},
		{"classic buckets duration", ifc + "metrics: {classicBuckets: [5ms]}\n", []string{`metrics.classicBuckets[0]: must be a number, not the single value "5ms"`}},
		{"node invalid", ifc + "node: gw 1\n", []string{`agent.yaml:2: node: "gw 1" must be 1 to 253 characters`}},
		{"node empty", ifc + "node: ''\n", []string{"agent.yaml:2: node: is required"}},
		{"unknown field", ifc + "xdp_mode: native\n", []string{"agent.yaml:2: xdp_mode: unknown field"}},
		{"unknown nested field", ifc + "listen:\n  api: unix:///run/graylane/api.sock\n  metrcis: 127.0.0.1:9477\n",
			[]string{"agent.yaml:4: listen.metrcis: unknown field"}},
		{"unknown field in interface", "interfaces:\n  - {name: eth0, role: client, mtu: 9000}\n",
			[]string{"agent.yaml:2: interfaces[0].mtu: unknown field"}},
		{"unknown field in cluster tls", ifc + "cluster:\n  tls: {ca: /ca.pem, crt: /c.pem}\n",
			[]string{"agent.yaml:3: cluster.tls.crt: unknown field"}},
		{"unknown fields everywhere", ifc + "foo: 1\nlisten: {bar: 2}\ncluster: {join: [a], baz: 3}\n",
			[]string{"agent.yaml:2: foo: unknown field", "agent.yaml:3: listen.bar: unknown field", "agent.yaml:4: cluster.baz: unknown field"}},
		{"anchor under an unknown field", "defaults: &d {name: eth0, role: client}\ninterfaces: [*d]\n",
			[]string{"agent.yaml:1: defaults: unknown field"}},
		{"setting twice", ifc + "flowTable: 2048\nflowTable: 4096\n", []string{"agent.yaml:3: flowTable: is given twice (first on line 2)"}},
		{"cluster join a string", ifc + "cluster: {join: 10.0.0.2:7071}\n", []string{`agent.yaml:2: cluster.join: must be a list, not the single value "10.0.0.2:7071"`}},
		{"listen a string", ifc + "listen: unix:///run/graylane/api.sock\n", []string{"agent.yaml:2: listen: must be a mapping of settings"}},
		{"not a mapping", "- eth0\n", []string{"agent.yaml:1: the agent config is a mapping of settings, not a list"}},
		{"key not a name", ifc + "? [a]\n: b\n", []string{"agent.yaml:2: config: has a key that is not a field name"}},
		{"two documents", ifc + "---\nnode: gw-2\n", []string{"agent.yaml:3: a second YAML document"}},
		{"bad YAML", ifc + "listen: {api: x\n", []string{"agent.yaml:2: not valid YAML: did not find expected ',' or '}'"}},
		{"tab", ifc + "\tnode: gw-1\n", []string{"agent.yaml:2: not valid YAML"}},
		{"all at once", "interfaces: [{name: eth0, role: client}, {name: eth0, role: x}]\nxdpMode: fast\nbpffs: bpf\nflowTable: 10\nlisten: {api: x, metrics: y}\n",
			[]string{
				`agent.yaml:1: interfaces[1].name: "eth0" is listed twice`,
				`agent.yaml:1: interfaces[1].role: "x" is not a role`,
				`agent.yaml:2: xdpMode: "fast"`,
				`agent.yaml:3: bpffs: "bpf" is relative`,
				"agent.yaml:4: flowTable: 10 is outside",
				`agent.yaml:5: listen.api: "x" is not an API address`,
				`agent.yaml:5: listen.metrics: "y" is not a host:port`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("agent.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Parse succeeded with %+v; want %q", c, tt.want)
			}
			if c != nil {
				t.Errorf("Parse returned a config with its error")
			}
			got := strictyaml.Leaves(err)
			for i, e := range got {
				var ce *Error
				if !errors.As(e, &ce) || ce.File != "agent.yaml" {
					t.Errorf("error %d (%v) is not an *Error of agent.yaml", i, e)
				}
				if i < len(tt.want) && !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("error %d:\n  %v\nwant it to contain\n  %s", i, e, tt.want[i])
				}
			}
			if len(got) != len(tt.want) {
				t.Errorf("got %d errors, want %d:\n%v", len(got), len(tt.want), err)
			}
		})
	}
}

func TestFieldErrorAs(t *testing.T) {
	_, err := Parse("agent.yaml", []byte("interfaces: [{name: eth0, role: client}]\nflowTable: 1\n"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "flowTable" {
		t.Fatalf("errors.As(*FieldError) = %+v from %v, want path flowTable", fe, err)
	}
}

func TestValidateDefaultWithInterface(t *testing.T) {
	c := Default()
	c.Interfaces = []Interface{{Name: "eth0", Role: RoleClient}, {Name: "eth1", Role: RoleBackend}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestInstalledDefault: the configuration `make install` lays out loads.
func TestInstalledDefault(t *testing.T) {
	cfg, err := Load("../systemd/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/var/lib/graylane" || cfg.Listen.API != "unix:///run/graylane/api.sock" || len(cfg.Interfaces) != 2 {
		t.Errorf("installed default: %+v", cfg)
	}
}

func TestClusterTimeouts(t *testing.T) {
	const head = "interfaces: [{name: eth0, role: client}]\ncluster: {raft: '10.0.0.1:7071', tls: {ca: /a, cert: /b, key: /c}, "
	ms := time.Millisecond
	for _, tt := range []struct {
		name, in string
		want     Timeouts
	}{
		{"raft's defaults", "}", Timeouts{time.Second, time.Second, 500 * ms}},
		{"lan", "timing: lan}", Timeouts{200 * ms, 200 * ms, 100 * ms}},
		{"wan", "timing: wan}", Timeouts{2 * time.Second, 2 * time.Second, 2 * time.Second}},
		{"lan with a longer election", "timing: lan, electionTimeout: 400ms}", Timeouts{200 * ms, 400 * ms, 100 * ms}},
		{"explicit", "heartbeatTimeout: 300ms, electionTimeout: 300ms, leaderLeaseTimeout: 150ms}", Timeouts{300 * ms, 300 * ms, 150 * ms}},
	} {
		c, err := Parse("agent.yaml", []byte(head+tt.in+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got := c.Cluster.Timeouts(); got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, got, tt.want)
		}
	}
}
