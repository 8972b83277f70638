package shadow

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Kind is how a replayed response differs from the recorded one. An
// exchange counts under one kind, the first of error, status, header,
// body that applies.
type Kind string

// The kinds of difference.
const (
	KindError  Kind = "error"  // no response: refused, reset, timed out, malformed
	KindStatus Kind = "status" // another status code
	KindHeader Kind = "header" // a header compared differs, is missing or is new
	KindBody   Kind = "body"   // another body (JSON: another value)
)

// VolatileHeaders are the response headers never compared: they change
// from one response to the next without the answer changing (clocks,
// caches' validators, timing, tracing, cookies with session ids) or
// describe the transport rather than the answer (the body is compared
// itself, so Content-Length adds nothing). ETag and Last-Modified are
// here because two deployments of the same content commonly derive them
// from file times. Options.IgnoreHeaders adds to this list.
var VolatileHeaders = []string{
	"Date", "Age", "Expires", "Last-Modified", "ETag", "Server-Timing",
	"Set-Cookie", "X-Request-Id", "X-Correlation-Id", "Traceparent", "Tracestate",
	"X-Amzn-Trace-Id", "X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled",
	"Connection", "Keep-Alive", "Transfer-Encoding", "Content-Length",
}

// difference is the first way got differs from rec.
type difference struct {
	kind          Kind
	where         string // header name, JSON path, byte offset
	recorded, got string
}

// compareResponses returns nil if got answers as rec does. ignore holds
// canonical header names.
func compareResponses(proto Protocol, rec, got *Response, ignore map[string]bool) *difference {
	if proto == HTTP {
		if rec.Status != got.Status {
			return &difference{kind: KindStatus, recorded: strconv.Itoa(rec.Status), got: strconv.Itoa(got.Status)}
		}
		if d := compareHeaders(rec.Header, got.Header, ignore); d != nil {
			return d
		}
	}
	return compareBodies(rec, got)
}

func compareHeaders(rec, got http.Header, ignore map[string]bool) *difference {
	names := map[string]bool{}
	for name := range rec {
		names[http.CanonicalHeaderKey(name)] = true
	}
	for name := range got {
		names[http.CanonicalHeaderKey(name)] = true
	}
	sorted := make([]string, 0, len(names))
	for name := range names {
		if !ignore[name] {
			sorted = append(sorted, name)
		}
	}
	sort.Strings(sorted)
	for _, name := range sorted {
		r, g := rec.Values(name), got.Values(name)
		if !slices.Equal(r, g) {
			return &difference{kind: KindHeader, where: name, recorded: headerText(r), got: headerText(g)}
		}
	}
	return nil
}

func headerText(values []string) string {
	if values == nil {
		return "(absent)"
	}
	return strings.Join(values, ", ")
}

// compareBodies compares the bodies byte for byte, after undoing gzip,
// or, when both are JSON by their Content-Type and parse, as JSON values.
func compareBodies(rec, got *Response) *difference {
	rb, gb := plainBody(rec), plainBody(got)
	if isJSON(rec.Header) && isJSON(got.Header) {
		rv, rerr := parseJSON(rb)
		gv, gerr := parseJSON(gb)
		if rerr == nil && gerr == nil {
			path, r, g, same := jsonDiff(rv, gv, "")
			if same {
				return nil
			}
			if path == "" {
				path = "."
			}
			return &difference{kind: KindBody, where: path, recorded: r, got: g}
		}
	}
	if bytes.Equal(rb, gb) {
		return nil
	}
	i := 0
	for i < len(rb) && i < len(gb) && rb[i] == gb[i] {
		i++
	}
	from := max(0, i-20)
	return &difference{kind: KindBody, where: fmt.Sprintf("byte %d", i),
		recorded: excerpt(rb[min(from, len(rb)):]), got: excerpt(gb[min(from, len(gb)):])}
}

// plainBody is the body with a gzip Content-Encoding undone (as it was if
// it does not decompress).
func plainBody(r *Response) []byte {
	if !strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		return r.Body
	}
	zr, err := gzip.NewReader(bytes.NewReader(r.Body))
	if err != nil {
		return r.Body
	}
	plain, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return r.Body
	}
	return plain
}

func isJSON(h http.Header) bool {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func parseJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("more than one JSON value")
	}
	return v, nil
}

// jsonDiff returns the path of the first difference of a and b (keys in
// sorted order), with both values there, or same.
func jsonDiff(a, b any, path string) (where, ra, gb string, same bool) {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			break
		}
		keys := make([]string, 0, len(av)+len(bv))
		for k := range av {
			keys = append(keys, k)
		}
		for k := range bv {
			if _, dup := av[k]; !dup {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			x, inA := av[k]
			y, inB := bv[k]
			p := path + "." + k
			if !inA || !inB {
				return p, jsonText(x, inA), jsonText(y, inB), false
			}
			if w, r, g, s := jsonDiff(x, y, p); !s {
				return w, r, g, false
			}
		}
		return "", "", "", true
	case []any:
		bv, ok := b.([]any)
		if !ok {
			break
		}
		for i := 0; i < len(av) || i < len(bv); i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			if i >= len(av) || i >= len(bv) {
				return p, jsonText(at(av, i)), jsonText(at(bv, i)), false
			}
			if w, r, g, s := jsonDiff(av[i], bv[i], p); !s {
				return w, r, g, false
			}
		}
		return "", "", "", true
	default:
		if jsonEqualScalar(a, b) {
			return "", "", "", true
		}
	}
	return path, jsonText(a, true), jsonText(b, true), false
}

func at(s []any, i int) (any, bool) {
	if i < len(s) {
		return s[i], true
	}
	return nil, false
}

func jsonEqualScalar(a, b any) bool {
	an, aok := a.(json.Number)
	bn, bok := b.(json.Number)
	if aok && bok {
		if an == bn {
			return true
		}
		af, e1 := an.Float64()
		bf, e2 := bn.Float64()
		return e1 == nil && e2 == nil && af == bf
	}
	switch a.(type) {
	case map[string]any, []any:
		return false
	}
	return a == b
}

func jsonText(v any, present bool) string {
	if !present {
		return "(absent)"
	}
	b, _ := json.Marshal(v)
	return excerpt(b)
}

// excerptLen bounds the text of a value shown in an example.
const excerptLen = 120

func excerpt(b []byte) string {
	s := strconv.QuoteToASCII(string(b))
	s = s[1 : len(s)-1]
	if len(s) > excerptLen {
		return s[:excerptLen] + "…"
	}
	return s
}
