// Package printer writes graylanectl's output in the format the user asked
// for: an aligned table for people, JSON or YAML for scripts. JSON and YAML
// carry the API's own field names, so a script reads the same keys in both.
package printer

import (
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
		// Through JSON, so YAML uses the json tags' names.
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var generic any
		if err := json.Unmarshal(data, &generic); err != nil {
			return err
		}
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(generic); err != nil {
			return err
		}
		return enc.Close()
	}
	t := &Tab{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0), w: w}
	table(t)
	return t.tw.Flush()
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
