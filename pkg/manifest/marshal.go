package manifest

import (
	"bytes"
	"fmt"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/pkg/service"
)

// Marshal writes svcs as canonical manifests: one Service document per
// service, in order, with every default spelled out (tenant, key, app,
// timeout, canary weight). ParseFile reads the result back equal to svcs
// when svcs came from ParseFile; otherwise the defaults come back filled in
// (an empty tenant or app, a backend weight of 0). Marshal refuses a set
// that does not validate, so that what it writes always loads.
func Marshal(svcs []service.Service) ([]byte, error) {
	if err := service.ValidateSet(svcs); err != nil {
		return nil, fmt.Errorf("marshal manifests: %w", err)
	}
	if len(svcs) == 0 {
		return []byte{}, nil // yaml.v3 cannot close an encoder that wrote nothing
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for i := range svcs {
		if err := enc.Encode(serviceOut(&svcs[i])); err != nil {
			return nil, fmt.Errorf("marshal service %q: %w", svcs[i].Name, err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("marshal manifests: %w", err)
	}
	return buf.Bytes(), nil
}

// The canonical form, field order as in the contract.
type (
	serviceOutDoc struct {
		APIVersion string      `yaml:"apiVersion"`
		Kind       string      `yaml:"kind"`
		Metadata   metadataOut `yaml:"metadata"`
		Spec       specOut     `yaml:"spec"`
	}
	metadataOut struct {
		Name   string `yaml:"name"`
		Tenant string `yaml:"tenant"`
	}
	specOut struct {
		VIP               string     `yaml:"vip"`
		Port              uint16     `yaml:"port"`
		Protocol          string     `yaml:"protocol"`
		Key               string     `yaml:"key"`
		App               string     `yaml:"app"`
		Timeout           string     `yaml:"timeout"`
		IdleTimeout       string     `yaml:"idleTimeout,omitempty"`
		LatencyThresholds []string   `yaml:"latencyThresholds,omitempty,flow"`
		Stable            stableOut  `yaml:"stable"`
		Canary            canaryOut  `yaml:"canary"`
		Pins              []pinOut   `yaml:"pins,omitempty"`
		Mirror            *mirrorOut `yaml:"mirror,omitempty"`
		Match             []matchOut `yaml:"match,omitempty"`
	}
	stableOut struct {
		Backends []any `yaml:"backends,flow"`
	}
	canaryOut struct {
		Backends []any  `yaml:"backends,flow"`
		Weight   string `yaml:"weight"`
	}
	backendOut struct {
		Address string `yaml:"address"`
		Weight  uint32 `yaml:"weight"`
	}
	pinOut struct {
		Prefix string `yaml:"prefix"`
		Pool   string `yaml:"pool"`
	}
	mirrorOut struct {
		Percent string `yaml:"percent"`
		To      string `yaml:"to"`
		Snaplen uint32 `yaml:"snaplen,omitempty"`
	}
)

func serviceOut(s *service.Service) serviceOutDoc {
	out := serviceOutDoc{
		APIVersion: APIVersion,
		Kind:       KindService,
		Metadata:   metadataOut{Name: s.Name, Tenant: s.Tenant},
		Spec: specOut{
			VIP:         s.VIP.String(),
			Port:        s.Port,
			Protocol:    s.Protocol.String(),
			Key:         s.Key.String(),
			App:         string(s.App),
			Timeout:     s.Timeout.String(),
			IdleTimeout: idleTimeoutOut(s),
			Stable:      stableOut{Backends: backendsOut(s.Stable)},
			Canary:      canaryOut{Backends: backendsOut(s.Canary), Weight: s.CanaryWeight.String()},
		},
	}
	if out.Metadata.Tenant == "" {
		out.Metadata.Tenant = service.DefaultTenant
	}
	if out.Spec.App == "" {
		out.Spec.App = string(service.AppNone)
	}
	for _, th := range s.LatencyThresholds {
		out.Spec.LatencyThresholds = append(out.Spec.LatencyThresholds, th.String())
	}
	for _, p := range s.Pins {
		out.Spec.Pins = append(out.Spec.Pins, pinOut{Prefix: p.Prefix.String(), Pool: p.Pool.String()})
	}
	if m := s.Mirror; m != nil {
		out.Spec.Mirror = &mirrorOut{Percent: m.Percent.String(), To: m.To, Snaplen: m.Snaplen}
	}
	out.Spec.Match = matchesOut(s.Match)
	return out
}

// backendsOut writes a backend of weight 1 (or 0, which means 1) in the
// short form, any other in the long form.
func backendsOut(bs []service.Backend) []any {
	out := make([]any, 0, len(bs))
	for _, b := range bs {
		if b.Weight <= 1 {
			out = append(out, b.Addr.String())
		} else {
			out = append(out, backendOut{Address: b.Addr.String(), Weight: b.Weight})
		}
	}
	return out
}

// MarshalAll writes a set as manifests: the services as Marshal does,
// then one CanaryRelease document per release, in order, with every
// default spelled out (gate timeouts and statuses, the analysis, the close
// thresholds, onBreach). ParseAll reads the result back equal to a set
// that came from ParseAll. Like Marshal, MarshalAll refuses what would
// not load: a release that release.Validate rejects, or two releases of
// one name. That a release's service exists is not checked here (it is
// the cluster's check).
func MarshalAll(set Set) ([]byte, error) {
	out, err := Marshal(set.Services)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.Write(out)
	seen := make(map[string]bool, len(set.Releases))
	for i := range set.Releases {
		r := &set.Releases[i]
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("marshal release %q: %w", r.Name, err)
		}
		if seen[r.Name] {
			return nil, fmt.Errorf("marshal releases: release %q is given twice", r.Name)
		}
		seen[r.Name] = true
		if buf.Len() > 0 {
			buf.WriteString("---\n")
		}
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(releaseOut(r)); err != nil {
			return nil, fmt.Errorf("marshal release %q: %w", r.Name, err)
		}
		if err := enc.Close(); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// idleTimeoutOut writes spec.idleTimeout as idleTimeout reads it: not at
// all for the protocol's default.
func idleTimeoutOut(s *service.Service) string {
	switch s.IdleTimeout {
	case 0:
		return ""
	case service.NoIdleTimeout:
		return "never"
	}
	return s.IdleTimeout.String()
}
