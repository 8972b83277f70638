package printer

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type sample struct {
	Index   uint64            `json:"index"`
	Big     int64             `json:"big"`
	Rate    float64           `json:"rate"`
	Weight  string            `json:"weight"`
	Tricky  []string          `json:"tricky"`
	Empty   []string          `json:"empty"`
	Omitted string            `json:"omitted,omitempty"`
	Labels  map[string]string `json:"labels"`
	Ok      bool              `json:"ok"`
	Nothing *int              `json:"nothing"`
}

// TestYAMLRoundTrip: YAML output reads back as the same value, with the
// JSON names in the struct's order, integers as integers, and strings that
// look like other types quoted.
func TestYAMLRoundTrip(t *testing.T) {
	in := sample{
		Index: 1<<63 + 5, Big: -812300000, Rate: 0.035, Weight: "0.25%",
		Tricky: []string{"yes", "no", "", "1e3", "null", "~", "10:30", "[fd00::1]:53", "a: b", "- x", "#c", "0x1F", "true"},
		Empty:  []string{}, Labels: map[string]string{"b": "2", "a": "1"}, Ok: true,
	}
	var out bytes.Buffer
	if err := Print(&out, YAML, in, nil); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if !strings.HasPrefix(text, "index: 9223372036854775813\nbig: -812300000\nrate: 0.035\n") {
		t.Errorf("YAML starts:\n%s\nwant the fields in order, integers in full", text)
	}
	var generic any
	if err := yaml.Unmarshal(out.Bytes(), &generic); err != nil {
		t.Fatalf("YAML output does not parse: %v\n%s", err, text)
	}
	data, err := json.Marshal(generic)
	if err != nil {
		t.Fatal(err)
	}
	var back sample
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("%v: %s", err, data)
	}
	if !reflect.DeepEqual(back, in) {
		t.Errorf("YAML read back as %+v, want %+v\n%s", back, in, text)
	}
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"table", "json", "yaml"} {
		if f, err := ParseFormat(s); err != nil || string(f) != s {
			t.Errorf("ParseFormat(%q) = %q, %v", s, f, err)
		}
	}
	if _, err := ParseFormat("xml"); err == nil || !strings.Contains(err.Error(), "table, json or yaml") {
		t.Errorf("ParseFormat(xml): %v, want the allowed formats named", err)
	}
}

// TestTable: columns aligned, empty cells as "-", Line after the rows.
func TestTable(t *testing.T) {
	var out bytes.Buffer
	err := Print(&out, Table, nil, func(tab *Tab) {
		tab.Row("NAME", "WEIGHT")
		tab.Row("auth", "")
		tab.Line("%d service", 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NAME  WEIGHT\nauth  -\n1 service\n"; out.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", out.String(), want)
	}
}
