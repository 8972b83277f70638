package manifest

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// scalar is a YAML scalar kept exactly as written, so that a weight of 0.1
// stays "0.1" and a port of "8o" can be reported as written.
type scalar struct {
	value string
	set   bool // false when the field is absent or null
}

// UnmarshalYAML keeps the node's text. yaml.v3 does not call it for null.
func (s *scalar) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		// check has replaced such nodes; a TypeError lets decoding go on.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a single value, not %s", n.Line, describe(n))}}
	}
	s.value, s.set = n.Value, true
	return nil
}

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
	v := n
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		v = n.Alias
	}
	switch {
	case isNull(v):
		if t.Kind() == reflect.Struct && t != scalarType {
			*n = emptyMapping(n) // keeps a null list item in the list
		}
	case t == scalarType:
		if v.Kind != yaml.ScalarNode {
			d.fail(path, n.Line, "must be a single value, not %s", describe(v))
			*n = null(n)
		}
	case t == backendType && v.Kind == yaml.ScalarNode:
		// The short form: "10.1.0.11:8080".
	case t == backendType && v.Kind != yaml.MappingNode:
		d.fail(path, n.Line, `must be "address:port" or {address: "address:port", weight: N}, not %s`, describe(v))
		*n = emptyMapping(n)
	case t.Kind() == reflect.Pointer:
		d.check(n, t.Elem(), path)
	case t.Kind() == reflect.Slice:
		if v.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, "must be a list, not %s", describe(v))
			*n = null(n)
			return
		}
		for i, item := range v.Content {
			at := fmt.Sprintf("%s[%d]", path, i)
			d.lines[at] = item.Line
			d.check(item, t.Elem(), at)
		}
	case t.Kind() == reflect.Struct:
		if v.Kind != yaml.MappingNode {
			d.fail(path, n.Line, "must be a mapping of fields, not %s", describe(v))
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
	kept := make([]*yaml.Node, 0, len(n.Content))
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			where := path
			if where == "" {
				where = "document"
			}
			d.fail(where, k.Line, "has a key that is not a field name")
			continue
		}
		at := k.Value
		if path != "" {
			at = path + "." + k.Value
		}
		if line, dup := seen[k.Value]; dup {
			d.fail(at, k.Line, "is given twice (first on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		field, ok := fieldByTag(t, k.Value)
		switch {
		case ok:
		case k.Value == "<<":
			d.fail(at, k.Line, "merge keys are not supported: write the fields out")
			continue
		default:
			d.fail(at, k.Line, "unknown field")
			continue
		}
		d.lines[at] = k.Line
		d.check(v, field.Type, at)
		kept = append(kept, k, v)
	}
	n.Content = kept
}

// fieldByTag returns the field of struct type t whose yaml tag names name.
func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if f.IsExported() && tag == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func null(at *yaml.Node) yaml.Node {
	return yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: at.Line, Column: at.Column}
}

func emptyMapping(at *yaml.Node) yaml.Node {
	return yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: at.Line, Column: at.Column}
}
