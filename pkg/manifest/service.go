package manifest

import (
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/pkg/service"
)

// serviceDoc is a document of kind Service as written. Every leaf is a
// scalar, converted to the model by toService so that a bad value is
// reported with its field's path.
type serviceDoc struct {
	APIVersion scalar      `yaml:"apiVersion"`
	Kind       scalar      `yaml:"kind"`
	Metadata   metadataDoc `yaml:"metadata"`
	Spec       specDoc     `yaml:"spec"`
}

type metadataDoc struct {
	Name   scalar `yaml:"name"`
	Tenant scalar `yaml:"tenant"`
}

type specDoc struct {
	VIP      scalar `yaml:"vip"`
	Port     scalar `yaml:"port"`
	Protocol scalar `yaml:"protocol"`
	Key      scalar `yaml:"key"`
	App      scalar `yaml:"app"`
	Timeout  scalar `yaml:"timeout"`
	// IdleTimeout: a duration, or 0 / never for no idle timeout.
	IdleTimeout scalar `yaml:"idleTimeout"`
	// LatencyThresholds: up to 4 response times whose exceedances the
	// data path counts exactly (an extension of the contract).
	LatencyThresholds []scalar   `yaml:"latencyThresholds"`
	Stable            stableDoc  `yaml:"stable"`
	Canary            canaryDoc  `yaml:"canary"`
	Pins              []pinDoc   `yaml:"pins"`
	Mirror            *mirrorDoc `yaml:"mirror"`
	Match             []matchDoc `yaml:"match"`
}

type stableDoc struct {
	Backends []backendDoc `yaml:"backends"`
}

type canaryDoc struct {
	Backends []backendDoc `yaml:"backends"`
	Weight   scalar       `yaml:"weight"`
}

// backendDoc is a backend written either as "10.1.0.11:8080" (short) or as
// {address: "10.1.0.11:8080", weight: 2}.
type backendDoc struct {
	Address scalar `yaml:"address"`
	Weight  scalar `yaml:"weight"`
	short   bool
}

// UnmarshalYAML reads either form.
func (b *backendDoc) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*b = backendDoc{Address: scalar{value: n.Value, set: true}, short: true}
		return nil
	}
	type fields backendDoc // the same fields without this method
	return n.Decode((*fields)(b))
}

type pinDoc struct {
	Prefix scalar `yaml:"prefix"`
	Pool   scalar `yaml:"pool"`
}

type mirrorDoc struct {
	Percent scalar `yaml:"percent"`
	To      scalar `yaml:"to"`
	Snaplen scalar `yaml:"snaplen"`
}

// decodeService decodes a document of kind Service. It returns the service
// even when some fields are bad (they are reported), so that the service can
// still take part in the checks across services.
func (d *document) decodeService(top *yaml.Node) *service.Service {
	d.check(top, reflect.TypeFor[serviceDoc](), "")
	var doc serviceDoc
	if err := top.Decode(&doc); err != nil {
		// check leaves only what decodes: this is a bug in this package.
		d.errs = append(d.errs, &Error{File: d.file, Line: d.start, Err: fmt.Errorf("decode service: %w", err)})
		return nil
	}
	svc := d.toService(&doc)
	return &svc
}

// toService converts doc to the model, filling in defaults and reporting
// every value that does not parse. What service.Validate checks is left to
// it, so that every way into the system uses the same words.
func (d *document) toService(doc *serviceDoc) service.Service {
	meta, spec := &doc.Metadata, &doc.Spec
	s := service.Service{
		Name:    meta.Name.value,
		Tenant:  service.DefaultTenant,
		Key:     service.KeyFlow,
		App:     service.AppNone,
		Timeout: service.DefaultTimeout,
	}
	if meta.Tenant.set {
		if meta.Tenant.value == "" {
			d.failField("metadata.tenant", "is empty: leave it out for tenant %q", service.DefaultTenant)
		}
		s.Tenant = meta.Tenant.value
	}
	if spec.VIP.set {
		vip, err := netip.ParseAddr(spec.VIP.value)
		if err != nil {
			d.failField("spec.vip", "%q is not an IP address: use one such as 10.0.0.10 or 2001:db8::10", spec.VIP.value)
		}
		s.VIP = vip
	}
	if spec.Port.set {
		s.Port = d.port("spec.port", spec.Port.value)
	}
	if !spec.Protocol.set {
		d.failField("spec.protocol", "is required: use tcp or udp")
	} else if p, err := service.ParseProtocol(spec.Protocol.value); err != nil {
		d.failField("spec.protocol", "%v", err)
	} else {
		s.Protocol = p
	}
	if spec.Key.set {
		k, err := service.ParseKeyKind(spec.Key.value)
		if err != nil {
			d.failField("spec.key", "%v", err)
		}
		s.Key = k
	}
	if spec.App.set && spec.App.value != "" {
		s.App = service.App(spec.App.value) // Validate names the allowed ones
	}
	if spec.Timeout.set {
		t, err := time.ParseDuration(spec.Timeout.value)
		if err != nil {
			d.failField("spec.timeout", "%q is not a duration: use one such as 5s or 500ms", spec.Timeout.value)
		}
		s.Timeout = t
	}
	s.IdleTimeout = d.idleTimeout(spec.IdleTimeout)
	for i, th := range spec.LatencyThresholds {
		path := fmt.Sprintf("spec.latencyThresholds[%d]", i)
		if !th.set {
			d.failField(path, "is empty: give a duration such as 800ms")
			continue
		}
		t, err := time.ParseDuration(th.value)
		if err != nil {
			d.failField(path, "%q is not a duration: use one such as 800ms", th.value)
			continue
		}
		s.LatencyThresholds = append(s.LatencyThresholds, t)
	}
	s.Stable = d.backends("spec.stable.backends", spec.Stable.Backends)
	s.Canary = d.backends("spec.canary.backends", spec.Canary.Backends)
	if spec.Canary.Weight.set {
		s.CanaryWeight = d.weight("spec.canary.weight", spec.Canary.Weight.value)
	}
	s.Pins = d.pins(spec.Pins)
	if spec.Mirror != nil {
		s.Mirror = d.mirror(spec.Mirror)
	}
	s.Match = d.match(spec.Match)
	return s
}

// mirror reads spec.mirror.
func (d *document) mirror(doc *mirrorDoc) *service.Mirror {
	m := &service.Mirror{To: doc.To.value}
	if !doc.Percent.set {
		d.failField("spec.mirror.percent", "is required: the share of flows to copy, such as 1%%")
	} else {
		m.Percent = d.weight("spec.mirror.percent", doc.Percent.value)
	}
	if doc.Snaplen.set {
		m.Snaplen = d.snaplen("spec.mirror.snaplen", doc.Snaplen.value)
	}
	return m
}

// port reads a port number 1..65535.
func (d *document) port(path, v string) uint16 {
	n, err := strconv.ParseUint(v, 10, 16)
	if err != nil || n == 0 {
		d.failField(path, "%q is not a port: use a whole number from 1 to 65535", v)
		return 0
	}
	return uint16(n)
}

// snaplen reads a count of bytes; its range is service.Validate's check.
func (d *document) snaplen(path, v string) uint32 {
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		d.failField(path, "%q is not a length: use a whole number of bytes from %d to %d, or leave it out to keep whole packets",
			v, service.MinSnaplen, service.MaxSnaplen)
		return 0
	}
	return uint32(n)
}

// weight reads a percentage as written ("5", "5%", "0.25%").
func (d *document) weight(path, v string) service.Weight {
	w, err := service.ParseWeight(v)
	if err != nil {
		d.failField(path, "%v", err)
	}
	return w
}

// backends reads the backends of one pool. A backend whose address does not
// parse keeps its place, with no address, so that the indexes in later
// messages match the manifest.
func (d *document) backends(path string, docs []backendDoc) []service.Backend {
	var out []service.Backend
	for i, b := range docs {
		at := fmt.Sprintf("%s[%d]", path, i)
		addrPath := at + ".address"
		if b.short {
			addrPath = at
		}
		be := service.Backend{Weight: 1}
		switch {
		case !b.Address.set && !b.Weight.set:
			d.failField(at, "is empty: give an address:port such as 10.1.0.11:8080")
		case !b.Address.set:
			d.failField(addrPath, "is required: an address:port such as 10.1.0.11:8080")
			d.bad[at] = true
		default:
			ap, err := netip.ParseAddrPort(b.Address.value)
			if err != nil {
				d.failField(addrPath, "%q is not an address:port: use one such as 10.1.0.11:8080 or [2001:db8::11]:8080", b.Address.value)
				d.bad[at] = true
			}
			be.Addr = ap
		}
		if b.Weight.set {
			w, err := strconv.ParseUint(b.Weight.value, 10, 32)
			if err != nil || w == 0 {
				d.failField(at+".weight", "%q is not a backend weight: use a whole number, 1 or more", b.Weight.value)
			} else {
				be.Weight = uint32(w)
			}
		}
		out = append(out, be)
	}
	return out
}

// pins reads the pins. Like backends, a bad pin keeps its place.
func (d *document) pins(docs []pinDoc) []service.Pin {
	var out []service.Pin
	for i, p := range docs {
		at := fmt.Sprintf("spec.pins[%d]", i)
		var pin service.Pin
		if !p.Prefix.set {
			d.failField(at+".prefix", "is required: a CIDR prefix such as 10.9.0.0/16")
		} else if prefix, err := netip.ParsePrefix(p.Prefix.value); err != nil {
			d.failField(at+".prefix", "%q is not a CIDR prefix: use an address and a length, such as 10.9.0.0/16 or 2001:db8:9::/48", p.Prefix.value)
		} else {
			pin.Prefix = prefix
		}
		if !p.Pool.set {
			d.failField(at+".pool", "is required: stable or canary")
		} else if pool, err := service.ParsePool(p.Pool.value); err != nil {
			d.failField(at+".pool", "%v", err)
		} else {
			pin.Pool = pool
		}
		out = append(out, pin)
	}
	return out
}

// idleTimeout reads spec.idleTimeout: absent, 0 (the protocol's default);
// 0 or "never", service.NoIdleTimeout.
func (d *document) idleTimeout(v scalar) time.Duration {
	if !v.set {
		return 0
	}
	if v.value == "never" || v.value == "0" {
		return service.NoIdleTimeout
	}
	t, err := time.ParseDuration(v.value)
	if err != nil {
		d.failField("spec.idleTimeout", "%q is not a duration: use one such as 120s or 1h, or never", v.value)
		return 0
	}
	if t == 0 {
		return service.NoIdleTimeout
	}
	return t
}
