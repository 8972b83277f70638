package manifest

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/pkg/tenant"
)

// KindTenant is what an admin grants one tenant (package tenant).
const KindTenant = "Tenant"

// tenantDoc is a document of kind Tenant as written.
type tenantDoc struct {
	APIVersion scalar        `yaml:"apiVersion"`
	Kind       scalar        `yaml:"kind"`
	Metadata   tenantMetaDoc `yaml:"metadata"`
	Spec       tenantSpecDoc `yaml:"spec"`
}

type tenantMetaDoc struct {
	Name scalar `yaml:"name"`
}

type tenantSpecDoc struct {
	VIPs             []scalar `yaml:"vips"`
	Backends         []scalar `yaml:"backends"`
	MaxServices      scalar   `yaml:"maxServices"`
	MaxReleases      scalar   `yaml:"maxReleases"`
	MaxPins          scalar   `yaml:"maxPins"`
	MaxCaptures      scalar   `yaml:"maxCaptures"`
	MaxMirrorPercent scalar   `yaml:"maxMirrorPercent"`
	MirrorInterfaces []scalar `yaml:"mirrorInterfaces"`
	AllowReserved    scalar   `yaml:"allowReserved"`
}

// decodeTenant decodes a document of kind Tenant, with the default quotas
// of package tenant where it names none.
func (d *document) decodeTenant(top *yaml.Node) *tenant.Tenant {
	d.check(top, reflect.TypeFor[tenantDoc](), "")
	var doc tenantDoc
	if err := top.Decode(&doc); err != nil {
		d.errs = append(d.errs, &Error{File: d.file, Line: d.start, Err: fmt.Errorf("decode tenant: %w", err)})
		return nil
	}
	spec := &doc.Spec
	t := &tenant.Tenant{Name: doc.Metadata.Name.value,
		VIPs:             d.prefixes("spec.vips", spec.VIPs),
		Backends:         d.prefixes("spec.backends", spec.Backends),
		MaxServices:      d.count("spec.maxServices", spec.MaxServices, tenant.DefaultMaxServices),
		MaxReleases:      d.count("spec.maxReleases", spec.MaxReleases, tenant.DefaultMaxReleases),
		MaxPins:          d.count("spec.maxPins", spec.MaxPins, tenant.DefaultMaxPins),
		MaxCaptures:      d.count("spec.maxCaptures", spec.MaxCaptures, tenant.DefaultMaxCaptures),
		MaxMirrorPercent: tenant.DefaultMaxMirrorPercent,
	}
	if spec.MaxMirrorPercent.set {
		t.MaxMirrorPercent = d.weight("spec.maxMirrorPercent", spec.MaxMirrorPercent.value)
	}
	for _, v := range spec.MirrorInterfaces {
		t.MirrorInterfaces = append(t.MirrorInterfaces, v.value)
	}
	if spec.AllowReserved.set {
		b, err := strconv.ParseBool(spec.AllowReserved.value)
		if err != nil {
			d.failField("spec.allowReserved", "%q: use true or false", spec.AllowReserved.value)
		}
		t.AllowReserved = b
	}
	return t
}

// prefixes reads a list of CIDR prefixes.
func (d *document) prefixes(path string, docs []scalar) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(docs))
	for i, v := range docs {
		p, err := netip.ParsePrefix(v.value)
		if err != nil {
			d.failField(fmt.Sprintf("%s[%d]", path, i), "%q is not a CIDR prefix such as 10.0.0.0/24", v.value)
			continue
		}
		out = append(out, p)
	}
	return out
}

// count reads a whole number, or def when absent.
func (d *document) count(path string, v scalar, def int) int {
	if !v.set {
		return def
	}
	n, err := strconv.Atoi(v.value)
	if err != nil || n < 0 {
		d.failField(path, "%q: give a whole number, 0 or more", v.value)
		return def
	}
	return n
}

func tenants(docs []*document) []tenant.Tenant {
	var out []tenant.Tenant
	for _, d := range docs {
		if d.ten != nil {
			out = append(out, *d.ten)
		}
	}
	return out
}

// validateTenants checks each tenant and that their names are unique.
func validateTenants(docs []*document) []error {
	return validateNamed(docs, "tenant", func(d *document) (string, func() error, bool) {
		if d.ten == nil {
			return "", nil, false
		}
		return d.ten.Name, d.ten.Validate, true
	})
}
