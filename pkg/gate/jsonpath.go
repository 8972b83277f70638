package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadPath is wrapped by Lookup's error for a path that is not written
// as release.ValidJSONPath requires.
var ErrBadPath = errors.New("not a JSON path")

// maxIndexDigits is the longest array index a path may write, as
// release.ValidJSONPath allows it.
const maxIndexDigits = 9

// step is one move into a JSON document: a field of an object or an
// element of an array. end is where the step ends in the path, so
// path[:end] names the value it reaches.
type step struct {
	key   string
	index int // -1: a field
	end   int
}

// parsePath reads a path as release.ValidJSONPath defines it: "." alone
// (the whole document), or field names (a letter or _, then letters,
// digits, _ and -) after dots, each optionally followed by array indexes
// in brackets; the first field name may be left out (".[2]").
func parsePath(path string) ([]step, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s (write one such as .db.status or .items[0].state)", ErrBadPath, path, fmt.Sprintf(format, args...))
	}
	if !strings.HasPrefix(path, ".") {
		return nil, bad("it starts with a dot")
	}
	var steps []step
	i := 1
	for first := true; ; first = false {
		n := fieldLen(path[i:])
		if n == 0 && !first {
			return nil, bad("a field name (a letter or _, then letters, digits, _ or -) must follow %q", path[:i])
		}
		if n > 0 {
			steps = append(steps, step{key: path[i : i+n], index: -1, end: i + n})
			i += n
		}
		for i < len(path) && path[i] == '[' {
			end := strings.IndexByte(path[i:], ']')
			if end < 0 {
				return nil, bad("the [ after %q is not closed", path[:i])
			}
			digits := path[i+1 : i+end]
			if digits == "" || len(digits) > maxIndexDigits || strings.Trim(digits, "0123456789") != "" {
				return nil, bad("[%s] after %q is not an array index (0 to %s)", digits, path[:i], strings.Repeat("9", maxIndexDigits))
			}
			idx, _ := strconv.Atoi(digits)
			i += end + 1
			steps = append(steps, step{index: idx, end: i})
		}
		if i == len(path) {
			return steps, nil
		}
		if path[i] != '.' {
			return nil, bad("%q follows %q where a dot or [ belongs", path[i:], path[:i])
		}
		i++
	}
}

// fieldLen is the length of the field name at the start of s.
func fieldLen(s string) int {
	for i, c := range []byte(s) {
		switch {
		case c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && (c == '-' || '0' <= c && c <= '9'):
		default:
			return i
		}
	}
	return len(s)
}

// Lookup finds path (".a.b", ".a[0].b", "." for the whole document) in a
// decoded JSON document and returns the value as text: a string as it
// is; a number as strconv writes it ("3" for 3 and 3.0, "3.5"; an integer
// decoded as a json.Number keeps every digit); "true", "false"; "null";
// an object or array as compact JSON. A path that leads nowhere is an
// error saying "PATH is missing" and where the document ends; a malformed
// path is an error wrapping ErrBadPath.
func Lookup(doc any, path string) (string, error) {
	steps, err := parsePath(path)
	if err != nil {
		return "", err
	}
	cur := doc
	start := 0 // where the current step starts: path[:start] names cur
	for _, s := range steps {
		at := name(path[:start])
		switch v := cur.(type) {
		case map[string]any:
			if s.index >= 0 {
				return "", fmt.Errorf("%s is missing: %s is an object, not an array", path, at)
			}
			next, ok := v[s.key]
			if !ok {
				if s.end == len(path) {
					return "", fmt.Errorf("%s is missing", path)
				}
				return "", fmt.Errorf("%s is missing: there is no %s", path, path[:s.end])
			}
			cur = next
		case []any:
			if s.index < 0 {
				return "", fmt.Errorf("%s is missing: %s is an array, not an object", path, at)
			}
			if s.index >= len(v) {
				return "", fmt.Errorf("%s is missing: %s has %d elements", path, at, len(v))
			}
			cur = v[s.index]
		default:
			want := "an object"
			if s.index >= 0 {
				want = "an array"
			}
			return "", fmt.Errorf("%s is missing: %s is %s, not %s", path, at, kind(cur), want)
		}
		start = s.end
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
