package config

import (
	"fmt"
	"reflect"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/pkg/strictyaml"
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
	if strictyaml.IsNull(n) {
		return // left out: the default stays
	}
	switch t.Kind() {
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			p.fail(path, n.Line, "must be a single value, not %s", strictyaml.Describe(n))
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			p.fail(path, n.Line, "must be a whole number, not %s", strictyaml.Describe(n))
		}
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			p.fail(path, n.Line, "must be a number, not %s", strictyaml.Describe(n))
		}
	case reflect.Pointer:
		p.check(n, t.Elem(), path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			p.fail(path, n.Line, "must be a list, not %s", strictyaml.Describe(n))
			return
		}
		for i, item := range n.Content {
			at := fmt.Sprintf("%s[%d]", path, i)
			p.lines[at] = item.Line
			if strictyaml.IsNull(item) {
				p.fail(at, item.Line, "is empty")
				continue
			}
			p.check(item, t.Elem(), at)
		}
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			p.fail(path, n.Line, "must be a mapping of settings, not %s", strictyaml.Describe(n))
			return
		}
		p.checkFields(n, t, path)
	default:
		panic(fmt.Sprintf("config: no rule to check %s", t)) // a bug in Config
	}
}

// checkFields checks the settings of n, a mapping read as struct type t.
func (p *parser) checkFields(n *yaml.Node, t reflect.Type, path string) {
	bad := func(path string, line int, msg string) { p.fail(path, line, "%s", msg) }
	for _, f := range strictyaml.Fields(n, t, path, "config", bad) {
		p.lines[f.Path] = f.Key.Line
		p.check(f.Value, f.Type, f.Path)
	}
}
