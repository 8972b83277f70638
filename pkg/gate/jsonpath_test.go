package gate

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/graylane/graylane/pkg/release"
)

const doc = `{
	"db": {"status": "UP", "pool": {"size": 10}},
	"items": [{"state": "ready", "n": 1}, {"state": "draining", "n": 2.5}, [true, null]],
	"ok": true, "off": false, "none": null, "s": "text", "zero": 0, "neg": -4, "frac": 0.000001,
	"int": 3.0, "exp": 25e-1, "big": 123456789012345678901234567890, "huge": 1e400,
	"with-dash": 1, "_under": 2, "A9": 3
}`

func decoded(t *testing.T) any {
	t.Helper()
	d, err := decodeJSON([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLookup(t *testing.T) {
	d := decoded(t)
	for _, tc := range []struct{ path, want string }{
		{".db.status", "UP"},
		{".db.pool.size", "10"},
		{".db.pool", `{"size":10}`},
		{".items[0].state", "ready"},
		{".items[1].n", "2.5"},
		{".items[2][0]", "true"},
		{".items[2][1]", "null"},
		{".items[2]", "[true,null]"},
		{".ok", "true"},
		{".off", "false"},
		{".none", "null"},
		{".s", "text"},
		{".zero", "0"},
		{".neg", "-4"},
		{".frac", "0.000001"},
		{".int", "3"},
		{".exp", "2.5"},
		{".big", "123456789012345678901234567890"},
		{".huge", "1e400"},
		{".with-dash", "1"},
		{"._under", "2"},
		{".A9", "3"},
	} {
		if got, err := Lookup(d, tc.path); err != nil || got != tc.want {
			t.Errorf("Lookup(%s) = %q, %v; want %q", tc.path, got, err, tc.want)
		}
	}
	whole, err := Lookup(d, ".")
	if err != nil || !strings.HasPrefix(whole, `{"A9":3,"_under":2,"big":123456789012345678901234567890,`) {
		t.Errorf("Lookup(.) = %q, %v", whole, err)
	}
	arr, _ := decodeJSON([]byte(`[[1, {"a": "b"}]]`))
	if got, err := Lookup(arr, ".[0][1].a"); err != nil || got != "b" {
		t.Errorf("Lookup(.[0][1].a) in an array = %q, %v", got, err)
	}
	if got, err := Lookup("plain", "."); err != nil || got != "plain" {
		t.Errorf("Lookup(.) of a string = %q, %v", got, err)
	}
}

func TestLookupMissing(t *testing.T) {
	d := decoded(t)
	for _, tc := range []struct{ path, want string }{
		{".db.state", ".db.state is missing"},
		{".nope", ".nope is missing"},
		{".nope.deeper[0]", ".nope.deeper[0] is missing: there is no .nope"},
		{".db.pool.size.x", ".db.pool.size.x is missing: .db.pool.size is a number (10), not an object"},
		{".db.status.x", `.db.status.x is missing: .db.status is a string ("UP"), not an object`},
		{".ok.x", ".ok.x is missing: .ok is a boolean (true), not an object"},
		{".none.x", ".none.x is missing: .none is null, not an object"},
		{".s[0]", `.s[0] is missing: .s is a string ("text"), not an array`},
		{".db[0]", ".db[0] is missing: .db is an object, not an array"},
		{".items.state", ".items.state is missing: .items is an array, not an object"},
		{".items[3]", ".items[3] is missing: .items has 3 elements"},
		{".items[3].state", ".items[3].state is missing: .items has 3 elements"},
		{".items[2][2]", ".items[2][2] is missing: .items[2] has 2 elements"},
		{".[0]", ".[0] is missing: the document is an object, not an array"},
	} {
		got, err := Lookup(d, tc.path)
		if err == nil || err.Error() != tc.want || errors.Is(err, ErrBadPath) {
			t.Errorf("Lookup(%s) = %q, %v; want the error %q", tc.path, got, err, tc.want)
		}
	}
}

// badPaths are malformed, as release.ValidJSONPath judges them.
var badPaths = []struct{ path, want string }{
	{"", "it starts with a dot"},
	{"db.status", "it starts with a dot"},
	{"[0]", "it starts with a dot"},
	{"..", `a field name (a letter or _, then letters, digits, _ or -) must follow ".."`},
	{".a.", `a field name (a letter or _, then letters, digits, _ or -) must follow ".a."`},
	{".a..b", `must follow ".a."`},
	{".a.[0]", `must follow ".a."`},
	{".1a", `"1a" follows "." where a dot or [ belongs`},
	{".-a", `"-a" follows "." where a dot or [ belongs`},
	{".a b", `" b" follows ".a" where a dot or [ belongs`},
	{".a[0]b", `"b" follows ".a[0]" where a dot or [ belongs`},
	{".a[", `the [ after ".a" is not closed`},
	{".a[0", `the [ after ".a" is not closed`},
	{".a[]", `[] after ".a" is not an array index (0 to 999999999)`},
	{".a[x]", `[x] after ".a" is not an array index`},
	{".a[-1]", `[-1] after ".a" is not an array index`},
	{".a[+1]", `[+1] after ".a" is not an array index`},
	{".a[ 1]", `[ 1] after ".a" is not an array index`},
	{".a[1234567890]", `[1234567890] after ".a" is not an array index`},
	{`.a["b"]`, `["b"] after ".a" is not an array index`},
	{".a]", `"]" follows ".a" where a dot or [ belongs`},
	{".é", `"é" follows "." where a dot or [ belongs`},
}

func TestLookupBadPath(t *testing.T) {
	d := decoded(t)
	for _, tc := range badPaths {
		_, err := Lookup(d, tc.path)
		if !errors.Is(err, ErrBadPath) || !strings.Contains(err.Error(), tc.want) ||
			!strings.HasSuffix(err.Error(), "(write one such as .db.status or .items[0].state)") {
			t.Errorf("Lookup(%q): %v; want an ErrBadPath saying %q", tc.path, err, tc.want)
		}
	}
}

// TestPathGrammar: the gate reads exactly the paths the manifest accepts.
func TestPathGrammar(t *testing.T) {
	paths := []string{".", ".a", ".db.status", ".items[0].state", ".[2]", ".[0][1].a", "._x.y-z.A9", ".a[123456789]", ".a[007]"}
	for _, tc := range badPaths {
		paths = append(paths, tc.path)
	}
	for _, p := range paths {
		_, err := release.ParseJSONPath(p)
		if (err == nil) != release.ValidJSONPath(p) {
			t.Errorf("%q: the gate says %v, release.ValidJSONPath says %v", p, err, release.ValidJSONPath(p))
		}
	}
}

// TestText: values decoded without UseNumber print the same way.
func TestText(t *testing.T) {
	var v any
	if err := json.Unmarshal([]byte(`[3, 3.5, 3.0, -0.25, 1e21, 1e-7]`), &v); err != nil {
		t.Fatal(err)
	}
	if got, want := Text(v), "[3,3.5,3,-0.25,1e+21,1e-7]"; got != want {
		t.Errorf("Text of an array = %q, want %q", got, want)
	}
	for _, tc := range []struct {
		v    any
		want string
	}{
		{3.0, "3"}, {3.5, "3.5"}, {-0.25, "-0.25"}, {1e21, "1000000000000000000000"}, {1e-7, "0.0000001"},
		{json.Number("3"), "3"}, {json.Number("3.50"), "3.5"}, {json.Number("1E2"), "100"}, {json.Number("-0"), "-0"},
		{nil, "null"}, {true, "true"}, {"", ""}, {map[string]any{}, "{}"}, {[]any{}, "[]"},
	} {
		if got := Text(tc.v); got != tc.want {
			t.Errorf("Text(%#v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
