package httphead

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// interpret fills the fields derived from the headers and checks the ones
// that say where the request ends.
func (r *Request) interpret() error {
	switch hosts := r.Headers["host"]; {
	case len(hosts) > 1:
		return fmt.Errorf("%w: %d Host headers; a request has at most one", ErrMalformed, len(hosts))
	case len(hosts) == 1:
		r.Host = hosts[0]
	}
	if hasToken(r.Headers["connection"], "upgrade") {
		r.Upgrade = strings.Join(r.Headers["upgrade"], ", ")
	}
	return r.framing()
}

// framing reads Content-Length and Transfer-Encoding (RFC 9112, section 6).
func (r *Request) framing() error {
	lengths, codings := r.Headers["content-length"], r.Headers["transfer-encoding"]
	if len(lengths) > 0 && len(codings) > 0 {
		return fmt.Errorf("%w: both Content-Length and Transfer-Encoding; the request's end would be ambiguous", ErrMalformed)
	}
	if len(codings) > 0 {
		list := listItems(codings)
		if len(list) == 0 || !strings.EqualFold(list[len(list)-1], "chunked") {
			return fmt.Errorf("%w: Transfer-Encoding %s does not end in chunked, so the request has no known end",
				ErrMalformed, excerpt(strings.Join(codings, ", ")))
		}
		r.Chunked = true
		return nil
	}
	length := int64(-1)
	for _, item := range listItems(lengths) {
		n, err := parseLength(item)
		if err != nil {
			return err
		}
		if length >= 0 && n != length {
			return fmt.Errorf("%w: Content-Length values %d and %d differ", ErrMalformed, length, n)
		}
		length = n
	}
	if len(lengths) > 0 && length < 0 {
		return fmt.Errorf("%w: Content-Length is empty", ErrMalformed)
	}
	r.ContentLength = max(length, 0)
	return nil
}

func parseLength(s string) (int64, error) {
	if s == "" || len(s) > 18 || strings.IndexFunc(s, func(c rune) bool { return c < '0' || c > '9' }) >= 0 {
		return 0, fmt.Errorf("%w: Content-Length %s is not a decimal length", ErrMalformed, excerpt(s))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: Content-Length %s: %v", ErrMalformed, excerpt(s), err)
	}
	return n, nil
}

// Fields returns the request's headers together with the pseudo-headers
// an HTTP/2 request would carry: :method, :scheme ("http", or the scheme
// of an absolute-form target), :authority (the target's authority, else
// Host) and :path (the target; none for CONNECT). The result is a new map.
func (r Request) Fields() map[string][]string {
	fields := make(map[string][]string, len(r.Headers)+4)
	for name, values := range r.Headers {
		fields[name] = values
	}
	scheme, authority, path := "http", r.Host, r.Target
	switch {
	case r.Method == "CONNECT":
		authority, path = r.Target, ""
	case !strings.HasPrefix(r.Target, "/") && strings.Contains(r.Target, "://"):
		scheme, authority, path = splitAbsolute(r.Target)
	}
	fields[":method"] = []string{r.Method}
	fields[":scheme"] = []string{scheme}
	if authority != "" {
		fields[":authority"] = []string{authority}
	}
	if path != "" {
		fields[":path"] = []string{path}
	}
	return fields
}

// splitAbsolute splits an absolute-form target "http://host:80/a?b".
func splitAbsolute(target string) (scheme, authority, path string) {
	scheme, rest, _ := strings.Cut(target, "://")
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		return strings.ToLower(scheme), rest, "/"
	}
	path = rest[end:]
	if path[0] != '/' {
		path = "/" + path
	}
	return strings.ToLower(scheme), rest[:end], path
}

// listItems splits comma-separated header values into trimmed, non-empty
// items (RFC 9110, section 5.6.1).
func listItems(values []string) []string {
	var items []string
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			if item = strings.Trim(item, " \t"); item != "" {
				items = append(items, item)
			}
		}
	}
	return items
}

func hasToken(values []string, token string) bool {
	for _, item := range listItems(values) {
		if strings.EqualFold(item, token) {
			return true
		}
	}
	return false
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func isDigit(b byte) bool { return '0' <= b && b <= '9' }

// isCtl reports control characters other than horizontal tab.
func isCtl(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }

func ctlName(b byte) string {
	switch b {
	case 0:
		return "NUL"
	case '\r':
		return "bare CR"
	}
	return fmt.Sprintf("control character 0x%02x", b)
}

// excerpt quotes s for an error message, cut to a readable length.
func excerpt(s string) string {
	const limit = 64
	if len(s) > limit {
		return fmt.Sprintf("%q...", s[:limit])
	}
	return fmt.Sprintf("%q", s)
}

// indexByte is bytes.IndexByte that looks at no more than limit bytes.
func indexByte(b []byte, c byte, limit int) int {
	if len(b) > limit {
		b = b[:limit]
	}
	return bytes.IndexByte(b, c)
}
