package strictyaml

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

type inner struct {
	Weight string `yaml:"weight"`
}

type outer struct {
	Name  string `yaml:"name"`
	Inner inner  `yaml:"inner"`
	skip  string //nolint:unused // unexported: never a field
}

func TestFields(t *testing.T) {
	var doc yaml.Node
	src := "name: a\ninner: {weight: 5}\nname: b\ncolour: red\n<<: {x: 1}\n? [k]\n: v\nskip: s\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	var problems []string
	fields := Fields(doc.Content[0], reflect.TypeFor[outer](), "", "doc", func(path string, line int, msg string) {
		problems = append(problems, path+"@"+string(rune('0'+line))+": "+msg)
	})
	var got []string
	for _, f := range fields {
		got = append(got, f.Path)
	}
	if strings.Join(got, ",") != "name,inner" {
		t.Errorf("fields %v", got)
	}
	want := []string{
		"name@3: is given twice (first on line 1)",
		"colour@4: unknown field",
		"<<@5: merge keys are not supported: write the fields out",
		"doc@6: has a key that is not a field name",
		"skip@8: unknown field",
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	sub := Fields(fields[1].Value, fields[1].Type, fields[1].Path, "doc", func(string, int, string) { t.Error("unexpected problem") })
	if len(sub) != 1 || sub[0].Path != "inner.weight" {
		t.Errorf("nested fields %+v", sub)
	}
}

func TestSyntaxError(t *testing.T) {
	for src, want := range map[string]int{
		"a: [1, 2\nb: 3\n": 2, // a parser error: yaml.v3 itself says line 1
		"a: b\n\tc: d\n":   2, // scanner error: reported right
	} {
		var v any
		err := yaml.Unmarshal([]byte(src), &v)
		if err == nil {
			t.Fatalf("%q parsed", src)
		}
		if line, msg := SyntaxError(err); line != want || msg == "" {
			t.Errorf("%q: line %d (%q), want %d", src, line, msg, want)
		}
	}
}

func TestHelpers(t *testing.T) {
	for in, want := range map[string]string{"spec.pins[0].prefix": "spec.pins[0]", "spec.pins[0]": "spec.pins", "spec": ""} {
		if got := Parent(in); got != want {
			t.Errorf("Parent(%q) = %q", in, got)
		}
	}
	a, b, c := errors.New("a"), errors.New("b"), errors.New("c")
	if got := Leaves(errors.Join(a, errors.Join(b, c))); len(got) != 3 || got[2] != c {
		t.Errorf("Leaves: %v", got)
	}
	var n yaml.Node
	yaml.Unmarshal([]byte("~"), &n)
	if !IsNull(n.Content[0]) || Describe(&yaml.Node{Kind: yaml.SequenceNode}) != "a list" {
		t.Error("IsNull/Describe")
	}
}
