package strictyaml

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type inner struct {
	Weight string `yaml:"weight"`
}

type outer struct {
	Name   string `yaml:"name"`
	Inner  inner  `yaml:"inner"`
	Opt    string `yaml:"opt,omitempty"`
	Untagd string
	skip   string `yaml:"skip"` //nolint:unused // unexported: never a field
}

// node parses src and returns its top node.
func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatalf("%q: %v", src, err)
	}
	if len(doc.Content) == 0 {
		t.Fatalf("%q: no document", src)
	}
	return doc.Content[0]
}

func TestFields(t *testing.T) {
	for _, c := range []struct {
		name     string
		src      string
		path     string
		fields   []string // "path@line"
		problems []string // "path@line: message"
	}{
		{name: "known fields in order", src: "inner: {weight: 5}\nname: a\nopt: x\n",
			fields: []string{"inner@1", "name@2", "opt@3"}},
		{name: "empty mapping", src: "{}"},
		{name: "unknown field", src: "name: a\ncolour: red\n",
			fields: []string{"name@1"}, problems: []string{"colour@2: unknown field"}},
		{name: "unknown field, nested path", src: "wieght: 5\n", path: "spec.canary",
			problems: []string{"spec.canary.wieght@1: unknown field"}},
		{name: "list item path", src: "name: a\nnope: 1\n", path: "spec.pins[3]",
			fields: []string{"spec.pins[3].name@1"}, problems: []string{"spec.pins[3].nope@2: unknown field"}},
		{name: "Go name, not the tag", src: "Name: a\n",
			problems: []string{"Name@1: unknown field"}},
		{name: "untagged field", src: "Untagd: a\n",
			problems: []string{"Untagd@1: unknown field"}},
		{name: "unexported field", src: "skip: s\n",
			problems: []string{"skip@1: unknown field"}},
		{name: "repeated field", src: "name: a\ninner: {}\nname: b\nname: c\n",
			fields: []string{"name@1", "inner@2"},
			problems: []string{
				"name@3: is given twice (first on line 1)",
				"name@4: is given twice (first on line 1)",
			}},
		{name: "merge key", src: "<<: {name: a}\n",
			problems: []string{"<<@1: merge keys are not supported: write the fields out"}},
		{name: "key not a name, top", src: "? [k]\n: v\nname: a\n",
			fields: []string{"name@3"}, problems: []string{"doc@1: has a key that is not a field name"}},
		{name: "key not a name, nested", src: "? {k: 1}\n: v\n", path: "spec",
			problems: []string{"spec@1: has a key that is not a field name"}},
		{name: "every problem, in order", src: "colour: red\nname: a\n<<: {}\nname: b\n",
			fields: []string{"name@2"},
			problems: []string{
				"colour@1: unknown field",
				"<<@3: merge keys are not supported: write the fields out",
				"name@4: is given twice (first on line 2)",
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var problems []string
			bad := func(path string, line int, msg string) {
				problems = append(problems, path+"@"+strconv.Itoa(line)+": "+msg)
			}
			var fields []string
			for _, f := range Fields(node(t, c.src), reflect.TypeFor[outer](), c.path, "doc", bad) {
				fields = append(fields, f.Path+"@"+strconv.Itoa(f.Key.Line))
			}
			if !reflect.DeepEqual(fields, c.fields) {
				t.Errorf("fields %q, want %q", fields, c.fields)
			}
			if !reflect.DeepEqual(problems, c.problems) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(c.problems, "\n"))
			}
		})
	}
}

// TestFieldsNested checks what a walk needs to go down: each field's value
// node and Go type.
func TestFieldsNested(t *testing.T) {
	none := func(path string, line int, msg string) { t.Errorf("%s@%d: %s", path, line, msg) }
	fields := Fields(node(t, "name: a\ninner:\n  weight: 5\n"), reflect.TypeFor[outer](), "spec", "doc", none)
	if len(fields) != 2 {
		t.Fatalf("fields %+v", fields)
	}
	if f := fields[0]; f.Type != reflect.TypeFor[string]() || f.Value.Value != "a" {
		t.Errorf("name: type %s, value %q", f.Type, f.Value.Value)
	}
	f := fields[1]
	if f.Type != reflect.TypeFor[inner]() || f.Value.Kind != yaml.MappingNode {
		t.Fatalf("inner: type %s, kind %v", f.Type, f.Value.Kind)
	}
	sub := Fields(f.Value, f.Type, f.Path, "doc", none)
	if len(sub) != 1 || sub[0].Path != "spec.inner.weight" || sub[0].Key.Line != 3 || sub[0].Value.Value != "5" {
		t.Errorf("nested fields %+v", sub)
	}
}

func TestDocuments(t *testing.T) {
	for _, c := range []struct {
		name  string
		src   string
		lines []int  // of the documents' top nodes
		err   string // "" for none
	}{
		{name: "empty", src: ""},
		{name: "comment only", src: "# nothing\n"},
		{name: "separators only", src: "---\n---\n"},
		{name: "null document", src: "~\n"},
		{name: "one", src: "a: 1\n", lines: []int{1}},
		{name: "a scalar", src: "hello\n", lines: []int{1}},
		{name: "trailing separator", src: "a: 1\n---\n", lines: []int{1}},
		{name: "empty ones skipped", src: "---\na: 1\n---\n---\nnull\n---\nb: 2\n", lines: []int{2, 7}},
		// yaml.v3 says line 1 for this parser error; the problem is on 2.
		{name: "parser error", src: "a: [1, 2\nb: 3\n",
			err: "f.yaml:2: not valid YAML: did not find expected ',' or ']'"},
		{name: "parser error, missing key", src: "a:\n  b: 1\n c: 2\n",
			err: "f.yaml:3: not valid YAML: did not find expected key"},
		// A scanner error: yaml.v3 reports its line right.
		{name: "scanner error", src: "a: b\n\tc: d\n",
			err: "f.yaml:2: not valid YAML: found a tab character that violates indentation"},
		// yaml.v3 says line 4; the list left open is on 5.
		{name: "documents before an error are kept", src: "a: 1\n---\nb: 2\n---\nc: [1\nd: 2\n", lines: []int{1, 3},
			err: "f.yaml:5: not valid YAML: did not find expected ',' or ']'"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tops, err := Documents("f.yaml", []byte(c.src))
			var lines []int
			for _, n := range tops {
				lines = append(lines, n.Line)
			}
			if !reflect.DeepEqual(lines, c.lines) {
				t.Errorf("documents at lines %v, want %v", lines, c.lines)
			}
			switch {
			case c.err == "" && err != nil:
				t.Errorf("error %v", err)
			case c.err != "" && (err == nil || err.Error() != c.err):
				t.Errorf("error %v, want %s", err, c.err)
			case err != nil:
				if e, ok := err.(*Error); !ok || e.File != "f.yaml" {
					t.Errorf("error %#v is not an *Error of f.yaml", err)
				}
			}
		})
	}
}

func TestLinesOf(t *testing.T) {
	lines := Lines{"spec": 3, "spec.pins": 6, "spec.pins[0]": 7, "kind": 2}
	for path, want := range map[string]int{
		"spec":                3,
		"spec.pins[0]":        7,
		"spec.pins[0].prefix": 7, // the closest field holding it
		"spec.pins[1].prefix": 6,
		"spec.vip":            3,
		"kind":                2,
		"metadata.name":       0, // nothing holding it is in the file
		"":                    0,
	} {
		if got := lines.Of(path); got != want {
			t.Errorf("Of(%q) = %d, want %d", path, got, want)
		}
	}
	if got := Lines(nil).Of("spec"); got != 0 {
		t.Errorf("nil Lines: %d", got)
	}
}

func TestParent(t *testing.T) {
	for in, want := range map[string]string{
		"spec.pins[0].prefix": "spec.pins[0]",
		"spec.pins[0]":        "spec.pins",
		"spec.pins":           "spec",
		"spec":                "",
		"a[1][2]":             "a[1]",
		"":                    "",
	} {
		if got := Parent(in); got != want {
			t.Errorf("Parent(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsNullDescribe(t *testing.T) {
	for _, c := range []struct {
		src      string
		null     bool
		describe string
	}{
		{"~", true, `the single value "~"`},
		{"null", true, `the single value "null"`},
		{"a: ", true, ""}, // the value of a, below
		{`"null"`, false, `the single value "null"`},
		{"5", false, `the single value "5"`},
		{"{a: 1}", false, "a mapping"},
		{"[1]", false, "a list"},
	} {
		n := node(t, c.src)
		if c.src == "a: " {
			n = n.Content[1]
		}
		if IsNull(n) != c.null {
			t.Errorf("IsNull(%q) = %v", c.src, !c.null)
		}
		if c.describe != "" && Describe(n) != c.describe {
			t.Errorf("Describe(%q) = %q, want %q", c.src, Describe(n), c.describe)
		}
	}
	alias := node(t, "a: &x 1\nb: *x\n").Content[3]
	if IsNull(alias) || Describe(alias) != "an alias" {
		t.Errorf("alias: IsNull %v, Describe %q", IsNull(alias), Describe(alias))
	}
}

func TestLeaves(t *testing.T) {
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	wrapped := fmt.Errorf("ctx: %w", a)
	for _, tc := range []struct {
		name string
		err  error
		want []error
	}{
		{"nil", nil, nil},
		{"one", a, []error{a}},
		{"a wrapped error is one leaf", wrapped, []error{wrapped}},
		{"joined", errors.Join(a, b), []error{a, b}},
		{"nested joins, in order", errors.Join(a, errors.Join(b, errors.Join(c)), b), []error{a, b, c, b}},
		{"multiple %w", fmt.Errorf("%w; %w", a, errors.Join(b, c)), []error{a, b, c}},
	} {
		if got := Leaves(tc.err); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Leaves = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestError(t *testing.T) {
	cause := errors.New("unknown field")
	for _, c := range []struct {
		err  *Error
		want string
	}{
		{&Error{File: "agent.yaml", Line: 4, Err: cause}, "agent.yaml:4: unknown field"},
		{&Error{File: "agent.yaml", Err: cause}, "agent.yaml: unknown field"},
	} {
		if got := c.err.Error(); got != c.want {
			t.Errorf("Error() = %q, want %q", got, c.want)
		}
		if !errors.Is(c.err, cause) {
			t.Errorf("%v does not unwrap to its cause", c.err)
		}
	}
}
