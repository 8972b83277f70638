package shadow

import (
	"net/http"
	"net/netip"
	"testing"
)

func jsonResponse(body string) *Response {
	return &Response{Status: 200, Header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, Body: []byte(body)}
}

// TestCompareJSON: JSON bodies are compared as values, and the first
// difference is named by its path.
func TestCompareJSON(t *testing.T) {
	for _, tc := range []struct{ rec, got, where string }{
		{`{"a":1,"b":[1,2]}`, "{ \"b\": [1, 2],\n \"a\": 1.0 }", ""},
		{`{"a":{"b":[1,{"c":"x"}]}}`, `{"a":{"b":[1,{"c":"y"}]}}`, ".a.b[1].c"},
		{`{"a":1}`, `{"a":1,"z":null}`, ".z"},
		{`[1,2,3]`, `[1,2]`, "[2]"},
		{`{"a":[1]}`, `{"a":{"0":1}}`, ".a"},
		{`1`, `"1"`, "."},
	} {
		d := compareResponses(HTTP, jsonResponse(tc.rec), jsonResponse(tc.got), nil)
		switch {
		case tc.where == "" && d != nil:
			t.Errorf("%s vs %s: %+v, want the same", tc.rec, tc.got, d)
		case tc.where != "" && (d == nil || d.where != tc.where || d.kind != KindBody):
			t.Errorf("%s vs %s: %+v, want a body difference at %s", tc.rec, tc.got, d, tc.where)
		}
	}
}

// TestCompareHeaders: ignored headers do not count, any
// other does, present or absent.
func TestCompareHeaders(t *testing.T) {
	rec := &Response{Status: 200, Header: http.Header{"Date": {"x"}, "Etag": {`"1"`}, "Vary": {"Accept"}}}
	got := &Response{Status: 200, Header: http.Header{"Date": {"y"}, "Etag": {`"2"`}, "Vary": {"Accept"}, "X-New": {"1"}}}
	ignore := map[string]bool{"Date": true, "Etag": true}
	if d := compareResponses(HTTP, rec, got, ignore); d == nil || d.where != "X-New" || d.recorded != "(absent)" {
		t.Errorf("%+v, want X-New (absent → 1)", d)
	}
	ignore["X-New"] = true
	if d := compareResponses(HTTP, rec, got, ignore); d != nil {
		t.Errorf("%+v, want none", d)
	}
}

func FuzzCompareBodies(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":2}]}`), []byte(`{"a":[1,{"b":3}]}`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		d := compareResponses(HTTP, jsonResponse(string(a)), jsonResponse(string(b)), nil)
		if string(a) == string(b) && d != nil {
			t.Errorf("%q differs from itself: %+v", a, d)
		}
	})
}

// TestVolatileIgnored: Run's settings ignore VolatileHeaders and
// IgnoreHeaders, whatever their spelling.
func TestVolatileIgnored(t *testing.T) {
	s, err := Options{Targets: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}, IgnoreHeaders: []string{"x-build"}}.settings()
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Date", "Etag", "Server-Timing", "X-Build", "Content-Length"} {
		if !s.ignore[h] {
			t.Errorf("%s is compared", h)
		}
	}
}
