package gate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/version"
)

// MaxBody bounds what an http gate reads of an answer's body.
const MaxBody = 1 << 20

// excerptLen bounds the body excerpt a failure quotes.
const excerptLen = 200

// httpGate GETs h.Path from every canary backend and checks the status and
// the JSON fields.
func (a *attempt) httpGate(h *release.HTTPGate, canary []netip.AddrPort, dial func(context.Context, string, string) (net.Conn, error)) Result {
	want := h.ExpectStatus
	if want == 0 {
		want = release.DefaultExpectStatus
	}
	path := h.Path
	if path == "" {
		path = "/"
	}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:       dial,
			Proxy:             nil, // the gate checks the backend itself, never a proxy from the environment
			DisableKeepAlives: true,
		},
		// A redirect is an answer to judge, not to follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	paths := slices.Sorted(maps.Keys(h.ExpectJSON))
	ok := fmt.Sprintf("got status %d for %s", want, path)
	for i, p := range paths {
		sep := ", "
		if i == 0 {
			sep = " with "
		}
		ok += fmt.Sprintf("%s%s = %q", sep, p, h.ExpectJSON[p])
	}
	ok += " from"
	return a.eachBackend(canary, ok, func(b netip.AddrPort) error {
		return a.checkHTTP(client, b, path, want, paths, h.ExpectJSON)
	})
}

func (a *attempt) checkHTTP(client *http.Client, b netip.AddrPort, path string, want int, paths []string, expect map[string]string) error {
	req, err := http.NewRequestWithContext(a.ctx, http.MethodGet, "http://"+hostPort(b)+path, nil)
	if err != nil {
		return fmt.Errorf("cannot make a request for %q: %v", path, err)
	}
	req.Header.Set("User-Agent", "graylane-gate/"+version.Version)
	resp, err := client.Do(req)
	if err != nil {
		return errors.New(a.why(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return fmt.Errorf("status %d, then reading the body: %s", resp.StatusCode, a.why(err))
	}
	tooBig := len(body) > MaxBody
	if tooBig {
		body = body[:MaxBody]
	}
	if resp.StatusCode != want {
		private := "body " + excerpt(body)
		if loc := resp.Header.Get("Location"); loc != "" && resp.StatusCode >= 300 && resp.StatusCode < 400 {
			private = fmt.Sprintf("a redirect to %q, not followed; %s", loc, private)
		}
		return &answerError{msg: fmt.Sprintf("status %d, want %d", resp.StatusCode, want), answer: private}
	}
	if len(paths) == 0 {
		return nil
	}
	if tooBig {
		return fmt.Errorf("the body is larger than %d bytes: too large to check its JSON", MaxBody)
	}
	doc, err := decodeJSON(body)
	if err != nil {
		return &answerError{msg: "the body is not JSON", answer: fmt.Sprintf("%v: %s", err, excerpt(body))}
	}
	var bad, got []string
	for _, p := range paths {
		v, err := Lookup(doc, p)
		switch {
		case err != nil:
			bad = append(bad, err.Error())
		case v != expect[p]:
			bad = append(bad, fmt.Sprintf("%s is not %q", p, expect[p]))
			got = append(got, fmt.Sprintf("%s is %q", p, v))
		}
	}
	switch {
	case len(got) > 0:
		return &answerError{msg: strings.Join(bad, ", "), answer: strings.Join(got, ", ")}
	case len(bad) > 0:
		return errors.New(strings.Join(bad, ", "))
	}
	return nil
}

// answerError is a failed check whose message says what was wrong
// without quoting the backend's answer (a body, a value, a redirect),
// which it keeps apart: the answer goes to the gate's Output, which
// only admins read (docs/gates.md).
type answerError struct {
	msg    string
	answer string
}

func (e *answerError) Error() string { return e.msg + " (the answer is in the gate's output)" }

// hostPort writes b for a URL: an IPv6 address in brackets, its zone
// escaped ("[fe80::1%25eth0]:8080").
func hostPort(b netip.AddrPort) string {
	return strings.Replace(b.String(), "%", "%25", 1)
}

// decodeJSON decodes one JSON value, keeping numbers as they are written.
func decodeJSON(body []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty body")
		}
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one value")
	}
	return doc, nil
}

// excerpt quotes the start of a body on one line.
func excerpt(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if s == "" {
		return "empty"
	}
	if len(s) > excerptLen {
		cut := excerptLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strconv.Quote(s)
}
