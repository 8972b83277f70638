// Package strictyaml holds what Graylane's two strict YAML readers (the
// manifests and the agent configuration) need beyond gopkg.in/yaml.v3.
//
// It exists because yaml.v3's strict mode (Decoder.KnownFields) rejects an
// unknown field without saying where it sits: "line 4: field wieght not
// found in type manifest.canaryDoc" names a Go type, not the path an
// operator wrote. And yaml.v3 v3.0.1 reports some syntax errors one line too
// early. So the readers walk the node tree against their Go types with
// Fields before decoding, and every message names the full path of the field
// ("spec.canary.wieght") and its right line.
package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Error is one problem in a YAML file, at a line.
type Error struct {
	File string
	// Line is 1-based; 0 when the problem has no single line.
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Field is a known field of a mapping.
type Field struct {
	// Path is the field's full path, e.g. "spec.canary.weight".
	Path string
	Key  *yaml.Node
	// Value is the field's value node.
	Value *yaml.Node
	// Type is the Go type the value decodes into.
	Type reflect.Type
}

// Fields checks the keys of the mapping n against the yaml tags of struct
// type t. It reports through bad, with the path and line, every key that is
// not a plain name, is repeated, is a merge key, or names no field of t, and
// returns the other fields in order. top names the document in messages
// about its own keys (when path is "").
func Fields(n *yaml.Node, t reflect.Type, path, top string, bad func(path string, line int, msg string)) []Field {
	out := make([]Field, 0, len(n.Content)/2)
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			where := path
			if where == "" {
				where = top
			}
			bad(where, k.Line, "has a key that is not a field name")
			continue
		}
		at := k.Value
		if path != "" {
			at = path + "." + k.Value
		}
		if line, dup := seen[k.Value]; dup {
			bad(at, k.Line, fmt.Sprintf("is given twice (first on line %d)", line))
			continue
		}
		seen[k.Value] = k.Line
		if k.Value == "<<" {
			bad(at, k.Line, "merge keys are not supported: write the fields out")
			continue
		}
		field, ok := fieldByTag(t, k.Value)
		if !ok {
			bad(at, k.Line, "unknown field")
			continue
		}
		out = append(out, Field{Path: at, Key: k, Value: v, Type: field.Type})
	}
	return out
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

// IsNull reports whether n is an explicit or implicit null.
func IsNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Describe names the kind of a node for an error message.
func Describe(n *yaml.Node) string {
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

// Parent returns the path of the field holding path: "spec.pins[0]" for
// "spec.pins[0].prefix", "spec.pins" for "spec.pins[0]", "" for "spec".
func Parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// Documents returns the top node of every document of data that is not
// empty (a document of nothing or of a null, such as after a trailing ---),
// in order. A syntax error ends the stream, since yaml.v3 cannot resume
// after one: Documents then returns the documents before it and the error,
// as an *Error of file at the error's line.
func Documents(file string, data []byte) ([]*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var tops []*yaml.Node
	for {
		var root yaml.Node
		err := dec.Decode(&root)
		if errors.Is(err, io.EOF) {
			return tops, nil
		}
		if err != nil {
			line, msg := syntaxError(err)
			return tops, &Error{File: file, Line: line, Err: fmt.Errorf("not valid YAML: %s", msg)}
		}
		if len(root.Content) == 0 || IsNull(root.Content[0]) {
			continue
		}
		tops = append(tops, root.Content[0])
	}
}

// Lines maps the path of a field ("spec.pins[0].prefix") to the line it is
// on in the file.
type Lines map[string]int

// Of returns the line of the field at path, or of the closest field holding
// it; 0 when neither is in the file.
func (l Lines) Of(path string) int {
	for p := path; p != ""; p = Parent(p) {
		if line, ok := l[p]; ok {
			return line
		}
	}
	return 0
}

// syntaxError splits a yaml.v3 syntax error ("yaml: line 3: did not find
// expected key") into its line (0 if it names none) and its message.
func syntaxError(err error) (line int, msg string) {
	msg = strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if n, err := strconv.Atoi(num); err == nil {
				line, msg = n, text
			}
		}
	}
	if line > 0 && zeroBasedLine(msg) {
		line++
	}
	return line, msg
}

// zeroBasedLine reports whether msg is one of the problems of yaml.v3's
// parser (parserc.go), as opposed to its scanner. yaml.v3 v3.0.1 adds one
// to the 0-based line of scanner errors but not of parser errors, so the
// line of these is one too low.
func zeroBasedLine(msg string) bool {
	for _, problem := range [...]string{
		"did not find expected <stream-start>",
		"did not find expected <document start>",
		"did not find expected node content",
		"did not find expected key",
		"did not find expected '-' indicator",
		"did not find expected ',' or ']'",
		"did not find expected ',' or '}'",
		"found undefined tag handle",
		"found duplicate %YAML directive",
		"found duplicate %TAG directive",
		"found incompatible YAML document",
	} {
		if msg == problem {
			return true
		}
	}
	return false
}

// Leaves flattens a tree of joined errors into its leaves, in order: the
// readers return every problem they find, one per leaf.
func Leaves(err error) []error {
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	var out []error
	for _, e := range joined.Unwrap() {
		out = append(out, Leaves(e)...)
	}
	return out
}
