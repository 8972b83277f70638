package manifest

// Tests of the manifests in testdata/manifests: every good file loads to
// the services it describes, every bad one fails with its errors, and a
// directory loads its manifest files in order.

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

const (
	goodDir = "../../testdata/manifests/good"
	badDir  = "../../testdata/manifests/bad"
)

// weighted returns a service of weights.yaml.
func weighted(name string, n int, weight service.Weight) service.Service {
	s := base(name, fmt.Sprintf("10.0.1.%d", n), fmt.Sprintf("10.1.4.%d:80", n))
	s.Canary = backends(fmt.Sprintf("10.2.4.%d:80", n))
	s.CanaryWeight = weight
	return s
}

func goodFiles() map[string][]service.Service {
	auth := base("auth", "10.0.0.10", "10.1.0.11:8080", "10.1.0.12:8080")
	auth.App = service.AppHTTP
	auth.Canary = backends("10.2.0.11:8080")
	auth.CanaryWeight = 500
	auth.Pins = []service.Pin{pin("10.9.0.0/16", service.Canary)}
	auth.Mirror = &service.Mirror{Percent: 100, To: "mirror0"}

	upf := base("upf", "10.0.0.30", "10.1.2.11:2152")
	upf.Port, upf.Protocol, upf.Key = 2152, service.UDP, service.KeyGTPUInner
	upf.Canary = backends("10.2.2.11:2152")
	upf.CanaryWeight = 500
	dns := base("dns", "10.0.0.53", "10.1.3.11:53", "10.1.3.12:53")
	dns.Port, dns.Protocol = 53, service.UDP

	v6 := base("search-v6", "2001:db8::10", "[2001:db8:1::11]:8443", "[2001:db8:1::12]:8443")
	v6.Port = 443
	v6.Canary = backends("[2001:db8:2::11]:8443")
	v6.CanaryWeight = 25
	v6.Pins = []service.Pin{pin("2001:db8:9::/48", service.Canary), pin("2001:db8:9:1::/64", service.Stable)}

	billing := base("billing", "10.0.0.20", "10.1.1.11:8080", "10.1.1.12:8080", "10.1.1.13:8080")
	billing.Tenant, billing.Port, billing.Key, billing.Timeout = "payments", 8080, service.KeyClient, 750*time.Millisecond
	billing.Stable[0].Weight = 3
	billing.Canary = []service.Backend{{Addr: netip.MustParseAddrPort("10.2.1.11:8080"), Weight: 2}}
	billing.CanaryWeight = 1000

	all := weighted("w-all", 7, 10000)
	all.Stable = nil

	return map[string][]service.Service{
		"auth.yaml":     {auth},
		"gtpu.yaml":     {upf, dns},
		"ipv6.yaml":     {v6},
		"weighted.yaml": {billing},
		"weights.yaml": {
			weighted("w-zero", 1, 0),
			weighted("w-step", 2, 1),
			weighted("w-bare", 3, 500),
			weighted("w-quoted", 4, 500),
			weighted("w-fraction", 5, 25),
			weighted("w-float", 6, 10),
			all,
		},
	}
}

func TestGoodFiles(t *testing.T) {
	want := goodFiles()
	for _, name := range listDir(t, goodDir) {
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("no expectation for %s: add one to goodFiles", name)
			}
			got, err := Load(filepath.Join(goodDir, name))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, w) {
				t.Errorf("got\n%+v\nwant\n%+v", got, w)
			}
		})
	}
}

func TestLoadDirectory(t *testing.T) {
	got, err := Load(goodDir)
	if err != nil {
		t.Fatal(err)
	}
	// Files in lexical order, documents in file order.
	var want []service.Service
	for _, name := range listDir(t, goodDir) {
		want = append(want, goodFiles()[name]...)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestLoadDirectorySkipsOtherFiles(t *testing.T) {
	dir := t.TempDir()
	auth, err := os.ReadFile(filepath.Join(goodDir, "auth.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	ipv6, err := os.ReadFile(filepath.Join(goodDir, "ipv6.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"b.yml":            string(auth),
		"a.yaml":           string(ipv6),
		"README.md":        "not a manifest",
		"c.yaml.bak":       "not: [a manifest",
		".hidden.yaml":     "not: [a manifest",
		"sub/nested.yaml":  "not: [a manifest",
		"dir.yaml/x.yaml":  "not: [a manifest",
		"notes.txt":        "kind: Service",
		"empty/.gitignore": "",
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Name)
	}
	if want := []string{"search-v6", "auth"}; !reflect.DeepEqual(names, want) {
		t.Errorf("services %q, want %q (a.yaml, then b.yml)", names, want)
	}

	got, err = Load(filepath.Join(dir, "empty"))
	if err != nil || len(got) != 0 {
		t.Errorf("Load(empty dir) = %v, %v; want no services, no error", got, err)
	}
	if _, err := Load(filepath.Join(dir, "missing")); err == nil {
		t.Error("Load(missing path) succeeded")
	}
}

// badCases is what each file (or directory) in testdata/manifests/bad must
// fail with: one substring per error, in order, and no other error.
var badCases = map[string][]string{
	"backend-no-port.yaml": {`backend-no-port.yaml:12: spec.stable.backends[1]: "10.1.0.12" is not an address:port`},
	"canary-empty.yaml":    {`canary-empty.yaml:13: service "auth": spec.canary.weight: is 5% but the canary pool has no backends`},
	"duplicate-frontend":   {`b.yaml:7: service "auth-next": spec.vip: 10.0.0.10:80/tcp is already the frontend of service "auth"`},
	"gtpu-over-tcp.yaml":   {`gtpu-over-tcp.yaml:9: service "upf": spec.key: gtpu-inner needs protocol udp`},
	"many-problems.yaml": {
		"many-problems.yaml:13: spec.stable.backends[1].adress: unknown field",
		`many-problems.yaml:7: spec.vip: "10.0.0.300" is not an IP address`,
		`many-problems.yaml:9: spec.protocol: "sctp" is not a protocol`,
		`many-problems.yaml:12: spec.stable.backends[0].weight: "0" is not a backend weight`,
		"many-problems.yaml:13: spec.stable.backends[1]: is empty",
		`many-problems.yaml:23: spec.timeout: "5" is not a duration`,
		`many-problems.yaml:5: service "Auth": metadata.name: "Auth" must be`,
		`many-problems.yaml:27: service "auth2": spec.pins[0].prefix: 10.9.0.1/16 has host bits set`,
		`many-problems.yaml:27: service "auth2": spec.pins[0].pool: pins 10.9.0.1/16 to the canary pool, which has no backends`,
	},
	"missing-kind.yaml":     {"missing-kind.yaml:1: kind: is required"},
	"pin-bad-cidr.yaml":     {`pin-bad-cidr.yaml:15: spec.pins[1].prefix: "10.300.0.0/16" is not a CIDR prefix`},
	"port-negative.yaml":    {`port-negative.yaml:7: spec.port: "-80" is not a port`},
	"port-not-integer.yaml": {`port-not-integer.yaml:7: spec.port: "http" is not a port`},
	"port-too-big.yaml":     {`port-too-big.yaml:7: spec.port: "70000" is not a port`},
	"port-zero.yaml":        {`port-zero.yaml:7: spec.port: "0" is not a port`},
	"syntax.yaml":           {"syntax.yaml:9: not valid YAML: did not find expected ',' or ']'"},
	"unknown-field.yaml":    {"unknown-field.yaml:14: spec.canary.wieght: unknown field"},
	"unknown-kind.yaml":     {`unknown-kind.yaml:2: kind: "Deployment" is not a kind of Graylane manifest`},
	"weight-above-100.yaml": {`weight-above-100.yaml:13: spec.canary.weight: weight "101%" is above 100%`},
	"weight-too-fine.yaml":  {`weight-too-fine.yaml:13: spec.canary.weight: weight "0.001%" has more than two decimals`},
	"wrong-apiversion.yaml": {`wrong-apiversion.yaml:1: apiVersion: "graylane.io/v2" is not supported: use graylane.io/v1`},
}

func TestBadFiles(t *testing.T) {
	names := listDir(t, badDir)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			want, ok := badCases[name]
			if !ok {
				t.Fatalf("no expectation for %s: add one to badCases", name)
			}
			_, err := Load(filepath.Join(badDir, name))
			checkErrors(t, err, want)
		})
	}
	for name := range badCases {
		if _, err := os.Stat(filepath.Join(badDir, name)); err != nil {
			t.Errorf("badCases names %s, which is missing: %v", name, err)
		}
	}
}

// listDir lists the entries of dir.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
