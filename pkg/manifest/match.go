package manifest

import (
	"fmt"
	"strings"

	"github.com/graylane/graylane/pkg/service"
)

// matchDoc is one rule of spec.match as written: one condition and a pool.
type matchDoc struct {
	Header       *fieldMatchDoc `yaml:"header"`
	GRPCMetadata *fieldMatchDoc `yaml:"grpcMetadata"`
	SNI          *sniMatchDoc   `yaml:"sni"`
	Pool         scalar         `yaml:"pool"`
}

// fieldMatchDoc is a header or grpcMetadata condition: a name and one of
// value, prefix or present: true.
type fieldMatchDoc struct {
	Name    scalar `yaml:"name"`
	Value   scalar `yaml:"value"`
	Prefix  scalar `yaml:"prefix"`
	Present scalar `yaml:"present"`
}

type sniMatchDoc struct {
	Name scalar `yaml:"name"`
}

// match reads spec.match. What service.Validate checks (one condition per
// rule, the app and protocol a condition needs, names and values) is left
// to it; this reads only what the model cannot hold: a value or prefix
// given but empty, present other than true, two of value, prefix and
// present. Like pins, a bad rule keeps its place.
func (d *document) match(docs []matchDoc) []service.MatchRule {
	var out []service.MatchRule
	for i, m := range docs {
		at := fmt.Sprintf("spec.match[%d]", i)
		var r service.MatchRule
		if m.Header == nil && m.GRPCMetadata == nil && m.SNI == nil && !m.Pool.set {
			d.failField(at, "is empty: give a condition and a pool, such as {header: {name: X-Canary, value: v2}, pool: canary}")
			out = append(out, r)
			continue
		}
		if m.Header != nil {
			r.Header = d.fieldMatch(at+".header", m.Header)
		}
		if m.GRPCMetadata != nil {
			r.GRPCMetadata = d.fieldMatch(at+".grpcMetadata", m.GRPCMetadata)
		}
		if m.SNI != nil {
			r.SNI = &service.SNIMatch{Name: m.SNI.Name.value}
		}
		if !m.Pool.set {
			d.failField(at+".pool", "is required: stable or canary, where matching connections go")
		} else if pool, err := service.ParsePool(m.Pool.value); err != nil {
			d.failField(at+".pool", "%v", err)
		} else {
			r.Pool = pool
		}
		out = append(out, r)
	}
	return out
}

// fieldMatch reads a header or grpcMetadata condition at path at. A
// problem with its value, prefix or present is reported here, and the
// condition's other problems are left until that is fixed.
func (d *document) fieldMatch(at string, doc *fieldMatchDoc) *service.FieldMatch {
	c := &service.FieldMatch{Name: doc.Name.value}
	var set []string
	for _, f := range []struct {
		name string
		v    scalar
	}{{"value", doc.Value}, {"prefix", doc.Prefix}, {"present", doc.Present}} {
		if f.v.set {
			set = append(set, f.name)
		}
	}
	switch {
	case len(set) > 1:
		d.failField(at, "sets both %s; set only one", strings.Join(set, " and "))
	case doc.Value.set && doc.Value.value == "":
		d.failField(at+".value", "is empty, and an empty value cannot be matched: use present: true to match any value")
	case doc.Prefix.set && doc.Prefix.value == "":
		d.failField(at+".prefix", "is empty, and would match any value: use present: true for that")
	case doc.Present.set && isFalse(doc.Present.value):
		d.failField(at+".present", "false would match nothing: leave present out and set value or prefix, or write present: true")
	case doc.Present.set && !isTrue(doc.Present.value):
		d.failField(at+".present", "%q is not true: present takes only true (the field is there, whatever its value)", doc.Present.value)
	default:
		c.Value, c.Prefix, c.Present = doc.Value.value, doc.Prefix.value, doc.Present.set
		return c
	}
	d.bad[at] = true
	return c
}

// isTrue and isFalse read a YAML 1.2 boolean as yaml.v3 does.
func isTrue(v string) bool  { return v == "true" || v == "True" || v == "TRUE" }
func isFalse(v string) bool { return v == "false" || v == "False" || v == "FALSE" }

// The canonical form of a rule: its condition on one line, as the
// contract writes it ({name: X-Canary, value: v2}), then its pool.
type (
	matchOut struct {
		Header       *fieldMatchOut `yaml:"header,omitempty,flow"`
		GRPCMetadata *fieldMatchOut `yaml:"grpcMetadata,omitempty,flow"`
		SNI          *sniMatchOut   `yaml:"sni,omitempty,flow"`
		Pool         string         `yaml:"pool"`
	}
	fieldMatchOut struct {
		Name    string `yaml:"name"`
		Value   string `yaml:"value,omitempty"`
		Prefix  string `yaml:"prefix,omitempty"`
		Present bool   `yaml:"present,omitempty"`
	}
	sniMatchOut struct {
		Name string `yaml:"name"`
	}
)

// matchesOut writes spec.match as match reads it back.
func matchesOut(rules []service.MatchRule) []matchOut {
	var out []matchOut
	for _, r := range rules {
		m := matchOut{Header: fieldMatchOutOf(r.Header), GRPCMetadata: fieldMatchOutOf(r.GRPCMetadata), Pool: r.Pool.String()}
		if r.SNI != nil {
			m.SNI = &sniMatchOut{Name: r.SNI.Name}
		}
		out = append(out, m)
	}
	return out
}

func fieldMatchOutOf(c *service.FieldMatch) *fieldMatchOut {
	if c == nil {
		return nil
	}
	return &fieldMatchOut{Name: c.Name, Value: c.Value, Prefix: c.Prefix, Present: c.Present}
}
