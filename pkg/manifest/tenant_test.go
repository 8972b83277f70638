package manifest

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/tenant"
)

const tenantDocA = `apiVersion: graylane.io/v1
kind: Tenant
metadata: {name: a}
spec:
  vips: [10.0.0.0/24]
  backends: [10.2.0.0/16]
  maxServices: 3
  maxMirrorPercent: 5%
`

// TestTenant: a Tenant document reads into its grants, with the default
// quotas where it names none.
func TestTenant(t *testing.T) {
	set, err := ParseAll("t.yaml", []byte(tenantDocA))
	if err != nil {
		t.Fatal(err)
	}
	if len(set.Tenants) != 1 {
		t.Fatalf("tenants: %+v", set.Tenants)
	}
	got := set.Tenants[0]
	if got.Name != "a" || got.VIPs[0] != netip.MustParsePrefix("10.0.0.0/24") || got.Backends[0] != netip.MustParsePrefix("10.2.0.0/16") ||
		got.MaxServices != 3 || got.MaxReleases != tenant.DefaultMaxReleases || got.MaxPins != tenant.DefaultMaxPins ||
		got.MaxMirrorPercent != 500 || got.AllowReserved {
		t.Errorf("tenant: %+v", got)
	}
}

// TestTenantErrors: every problem of a Tenant document names its line
// and field.
func TestTenantErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"bad prefix", strings.Replace(tenantDocA, "10.2.0.0/16", "10.2.0.0/33", 1), `t.yaml:6: spec.backends[0]: "10.2.0.0/33" is not a CIDR prefix`},
		{"host bits", strings.Replace(tenantDocA, "10.0.0.0/24", "10.0.0.1/24", 1), "t.yaml:5: spec.vips[0]: 10.0.0.1/24 has host bits set: write 10.0.0.0/24"},
		{"negative quota", strings.Replace(tenantDocA, "maxServices: 3", "maxServices: -1", 1), `t.yaml:7: spec.maxServices: "-1": give a whole number`},
		{"unknown field", strings.Replace(tenantDocA, "maxServices: 3", "maxServices: 3\n  colour: red", 1), "spec.colour: unknown field"},
		{"bad bool", tenantDocA + "  allowReserved: maybe\n", `spec.allowReserved: "maybe": use true or false`},
		{"twice", tenantDocA + "---\n" + tenantDocA, `tenant "a" is also defined at t.yaml:3`},
	} {
		_, err := ParseAll("t.yaml", []byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
