package gate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/graylane/graylane/pkg/release"
)

// ErrBadPath is wrapped by Lookup's error for a malformed path.
var ErrBadPath = release.ErrBadJSONPath

// Lookup finds path (".a.b", ".a[0].b", "." for the whole document) in a
// decoded JSON document and returns the value as text: a string as it
// is; a number as strconv writes it ("3" for 3 and 3.0, "3.5"; an integer
// decoded as a json.Number keeps every digit); "true", "false"; "null";
// an object or array as compact JSON. A path that leads nowhere is an
// error saying "PATH is missing" and where the document ends; a malformed
// path is an error wrapping ErrBadPath.
func Lookup(doc any, path string) (string, error) {
	steps, err := release.ParseJSONPath(path)
	if err != nil {
		return "", err
	}
	cur := doc
	start := 0 // where the current step starts: path[:start] names cur
	for _, s := range steps {
		at := name(path[:start])
		switch v := cur.(type) {
		case map[string]any:
			if s.Index >= 0 {
				return "", fmt.Errorf("%s is missing: %s is an object, not an array", path, at)
			}
			next, ok := v[s.Key]
			if !ok {
				if s.End == len(path) {
					return "", fmt.Errorf("%s is missing", path)
				}
				return "", fmt.Errorf("%s is missing: there is no %s", path, path[:s.End])
			}
			cur = next
		case []any:
			if s.Index < 0 {
				return "", fmt.Errorf("%s is missing: %s is an array, not an object", path, at)
			}
			if s.Index >= len(v) {
				return "", fmt.Errorf("%s is missing: %s has %d elements", path, at, len(v))
			}
			cur = v[s.Index]
		default:
			want := "an object"
			if s.Index >= 0 {
				want = "an array"
			}
			return "", fmt.Errorf("%s is missing: %s is %s, not %s", path, at, kind(cur), want)
		}
		start = s.End
	}
	return Text(cur), nil
}

// name names the value a path prefix reaches.
func name(prefix string) string {
	if prefix == "" || prefix == "." {
		return "the document"
	}
	return prefix
}

// kind says what a scalar JSON value is, with its value.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("a string (%q)", v)
	case bool:
		return fmt.Sprintf("a boolean (%s)", Text(v))
	}
	return fmt.Sprintf("a number (%s)", Text(v))
}

// Text writes a decoded JSON value as Lookup returns it.
func Text(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case bool:
		return strconv.FormatBool(x)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			return s // an integer, every digit kept
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return s // out of float64's range: as written
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
