package config

import (
	"fmt"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// check walks the nodes of the file against the Go type they will be decoded
// into, before decoding. yaml.v3's strict mode names an unknown setting but
// not where it sits; check names the full path ("listen.metrcis") and the
// line, and records the line of every setting for validation messages.
// Config does not nest into itself, so the walk is bounded by its depth even
// when aliases point back up the document.
func (p *parser) check(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if isNull(n) {
		return // left out: the default stays
	}
	switch t.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			p.fail(path, n.Line, "must be a single value, not %s", describe(n))
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			p.fail(path, n.Line, "must be a whole number, not %s", describe(n))
		}
	case reflect.Pointer:
		p.check(n, t.Elem(), path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.fail(path, n.Line, "must be a list, not %s", describe(n))
			return
		}
		for i, item := range n.Content {
			at := fmt.Sprintf("%s[%d]", path, i)
			p.lines[at] = item.Line
			if isNull(item) {
				p.fail(at, item.Line, "is empty")
				continue
			}
			p.check(item, t.Elem(), at)
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			p.fail(path, n.Line, "must be a mapping of settings, not %s", describe(n))
			return
		}
		p.checkFields(n, t, path)
	default:
		panic(fmt.Sprintf("config: no rule to check %s", t)) // a bug in Config
	}
}

// checkFields checks the settings of n, a mapping read as struct type t.
func (p *parser) checkFields(n *yaml.Node, t reflect.Type, path string) {
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			where := path
			if where == "" {
				where = "config"
			}
			p.fail(where, k.Line, "has a key that is not a field name")
			continue
		}
		at := k.Value
		if path != "" {
			at = path + "." + k.Value
		}
		if line, dup := seen[k.Value]; dup {
			p.fail(at, k.Line, "is given twice (first on line %d)", line)
			continue
		}
		seen[k.Value] = k.Line
		field, ok := fieldByTag(t, k.Value)
		if !ok {
			p.fail(at, k.Line, "unknown field")
			continue
		}
		p.lines[at] = k.Line
		p.check(v, field.Type, at)
	}
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

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names the kind of a node for an error message.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the single value %q", n.Value)
	}
	return "an alias"
}
