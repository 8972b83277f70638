// Package printer writes graylanectl's output in the format the user asked
// for: an aligned table for people, JSON or YAML for scripts. JSON and YAML
// carry the API's own field names, so a script reads the same keys in both.
package printer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// Format is an output format.
type Format string

// The formats.
const (
	Table Format = "table"
	JSON  Format = "json"
	YAML  Format = "yaml"
)

// ParseFormat reads the value of -o.
func ParseFormat(s string) (Format, error) {
	switch f := Format(s); f {
	case Table, JSON, YAML:
		return f, nil
	}
	return "", fmt.Errorf("-o %q: use table, json or yaml", s)
}

// Print writes v to w: as JSON or YAML, or, for Table, by calling table.
func Print(w io.Writer, f Format, v any, table func(t *Tab)) error {
	switch f {
	case JSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case YAML:
		// Through JSON, so YAML uses the json tags' names and omissions.
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		node, err := yamlNode(dec)
		if err != nil {
			return fmt.Errorf("convert to YAML: %w", err)
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(node); err != nil {
			return err
		}
		return enc.Close()
	}
	t := &Tab{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), w: w}
	table(t)
	return t.tw.Flush()
}

// yamlNode reads one JSON value into a YAML node. Not through map[string]any:
// that sorts the keys (JSON keeps the struct's order) and turns every
// number into a float64, which YAML prints as 2e+07 for a P50 of 20ms in
// nanoseconds.
func yamlNode(dec *json.Decoder) (*yaml.Node, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	scalar := func(tag, value string) *yaml.Node {
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
	}
	switch v := tok.(type) {
	case json.Delim:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if v == '{' {
			n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		for dec.More() {
			if n.Kind == yaml.MappingNode {
				key, err := dec.Token()
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, scalar("!!str", key.(string)))
			}
			item, err := yamlNode(dec)
			if err != nil {
				return nil, err
			}
			n.Content = append(n.Content, item)
		}
		if _, err := dec.Token(); err != nil { // the closing ] or }
			return nil, err
		}
		return n, nil
	case string:
		// Tagged !!str: the encoder quotes values that would read back as
		// something else ("yes", "1e3", "").
		return scalar("!!str", v), nil
	case json.Number:
		if strings.ContainsAny(v.String(), ".eE") {
			return scalar("!!float", v.String()), nil
		}
		return scalar("!!int", v.String()), nil
	case bool:
		return scalar("!!bool", fmt.Sprint(v)), nil
	case nil:
		return scalar("!!null", "null"), nil
	}
	return nil, fmt.Errorf("unexpected JSON token %v", tok)
}

// Tab is an aligned table; Line writes free text after the rows so far.
type Tab struct {
	tw *tabwriter.Writer
	w  io.Writer
}

// Row writes one row; empty cells print as "-".
func (t *Tab) Row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// Line ends the table so far and writes a line of text.
func (t *Tab) Line(format string, args ...any) {
	t.tw.Flush()
	fmt.Fprintf(t.w, format+"\n", args...)
}
