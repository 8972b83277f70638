package manifest

import (
	"fmt"
	"reflect"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/pkg/strictyaml"
)

// scalar is a YAML scalar kept exactly as written, so that a weight of 0.1
// stays "0.1" and a port of "8o" can be reported as written.
type scalar struct {
	value string
	set   bool // false when the field is absent or null
}

// UnmarshalYAML keeps the node's text. yaml.v3 does not call it for null,
// and drops a null item of a list: check marks null scalars with
// absentTag instead, so that such an item keeps its place, unset.
func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == absentTag {
		*s = scalar{}
		return nil
	}
	if n.Kind != yaml.ScalarNode {
		// check has replaced such nodes; a TypeError lets decoding go on.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a single value, not %s", n.Line, strictyaml.Describe(n))}}
	}
	s.value, s.set = n.Value, true
	return nil
}

// absentTag marks a null that check has seen where a scalar goes.
const absentTag = "!graylane.io/absent"

// maxWalk bounds the values check visits in one file (all its documents).
const maxWalk = 100_000

var (
	scalarType  = reflect.TypeFor[scalar]()
	backendType = reflect.TypeFor[backendDoc]()
)

// check walks the nodes of a document against the Go type they will be
// decoded into, before decoding. yaml.v3's strict mode names an unknown field
// but not where it sits; check names the full path ("spec.canary.wieght")
// and the line, and records the line of every field for later messages.
//
// check also repairs what it reports, so that decoding cannot stop half-way
// and every other problem of the document can still be found: it drops
// unknown and repeated fields, and replaces a value of the wrong shape with
// an empty one. A list item is kept even when empty, so that the indexes in
// later messages match the manifest.
//
// The document types do not nest into themselves, so the walk is bounded by
// their depth even when aliases point back up the document.
func (d *document) check(n *yaml.Node, t reflect.Type, path string) {
	// Aliases can make a small document name the same nodes again and
	// again (nested lists of aliases grow it exponentially): the walk has
	// a budget, so a hostile manifest costs bounded work.
	if *d.walked++; *d.walked > maxWalk {
		if *d.walked == maxWalk+1 {
			d.fail("", n.Line, "the file is too large, or its aliases repeat it too often (more than %d values in all)", maxWalk)
		}
		*n = null(n)
		return
	}
	v := n
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		v = n.Alias
	}
	switch {
	case strictyaml.IsNull(v):
		// Either keeps a null list item in the list.
		if t == scalarType {
			*n = absent(n)
		} else if t.Kind() == reflect.Struct {
			*n = emptyMapping(n)
		}
	case t == scalarType:
		if v.Kind != yaml.ScalarNode {
			d.fail(path, n.Line, "must be a single value, not %s", strictyaml.Describe(v))
			*n = absent(n)
		}
	case t == backendType && v.Kind == yaml.ScalarNode:
		// The short form: "10.1.0.11:8080".
	case t == backendType && v.Kind != yaml.MappingNode:
		d.fail(path, n.Line, `must be "address:port" or {address: "address:port", weight: N}, not %s`, strictyaml.Describe(v))
		*n = emptyMapping(n)
	case t.Kind() == reflect.Pointer:
		d.check(n, t.Elem(), path)
	case t.Kind() == reflect.Slice:
		if v.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, "must be a list, not %s", strictyaml.Describe(v))
			*n = null(n)
			return
		}
		for i, item := range v.Content {
			at := fmt.Sprintf("%s[%d]", path, i)
			d.lines[at] = item.Line
			d.check(item, t.Elem(), at)
		}
	case t.Kind() == reflect.Map:
		if v.Kind != yaml.MappingNode {
			d.fail(path, n.Line, "must be a mapping, not %s", strictyaml.Describe(v))
			*n = emptyMapping(n)
			return
		}
		seen := map[string]bool{}
		kept := make([]*yaml.Node, 0, len(v.Content))
		for i := 0; i+1 < len(v.Content); i += 2 {
			k, val := v.Content[i], v.Content[i+1]
			at := fmt.Sprintf("%s[%q]", path, k.Value)
			if k.Kind != yaml.ScalarNode || seen[k.Value] {
				d.fail(at, k.Line, "is given twice, or is not a plain key")
				continue
			}
			seen[k.Value] = true
			d.lines[at] = k.Line
			d.check(val, t.Elem(), at)
			kept = append(kept, k, val)
		}
		v.Content = kept
	case t.Kind() == reflect.Struct:
		if v.Kind != yaml.MappingNode {
			d.fail(path, n.Line, "must be a mapping of fields, not %s", strictyaml.Describe(v))
			*n = emptyMapping(n)
			return
		}
		d.checkFields(v, t, path)
	default:
		panic(fmt.Sprintf("manifest: no rule to check %s", t)) // a bug in the document types
	}
}

// checkFields checks the fields of n, a mapping read as struct type t, and
// keeps only the known ones, each once.
func (d *document) checkFields(n *yaml.Node, t reflect.Type, path string) {
	bad := func(path string, line int, msg string) { d.fail(path, line, "%s", msg) }
	fields := strictyaml.Fields(n, t, path, "document", bad)
	kept := make([]*yaml.Node, 0, 2*len(fields))
	for _, f := range fields {
		d.lines[f.Path] = f.Key.Line
		d.check(f.Value, f.Type, f.Path)
		kept = append(kept, f.Key, f.Value)
	}
	n.Content = kept
}

func null(at *yaml.Node) yaml.Node {
	return yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: at.Line, Column: at.Column}
}

func absent(at *yaml.Node) yaml.Node {
	return yaml.Node{Kind: yaml.ScalarNode, Tag: absentTag, Line: at.Line, Column: at.Column}
}

func emptyMapping(at *yaml.Node) yaml.Node {
	return yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: at.Line, Column: at.Column}
}
