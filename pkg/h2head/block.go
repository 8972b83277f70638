package h2head

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// decodeRequest decodes a complete header block into a request.
func decodeRequest(block []byte) (Request, error) {
	fields, err := decodeBlock(block)
	if err != nil {
		return Request{}, err
	}
	req := Request{Headers: make(map[string][]string)}
	regular := false
	for _, f := range fields {
		if err := checkField(f); err != nil {
			return Request{}, err
		}
		if !f.IsPseudo() {
			regular = true
			req.Headers[f.Name] = append(req.Headers[f.Name], f.Value)
			continue
		}
		if regular {
			return Request{}, fmt.Errorf("%w: pseudo-header %s after a regular header", ErrMalformed, f.Name)
		}
		if err := req.setPseudo(f); err != nil {
			return Request{}, err
		}
	}
	if err := req.check(); err != nil {
		return Request{}, err
	}
	req.GRPC = isGRPC(req.Headers["content-type"])
	return req, nil
}

// decodeBlock runs a fresh HPACK decoder over block, stopping the output
// once the header list passes MaxHeaderListBytes: indexed references to
// the dynamic table can make a small block decode to a huge list.
func decodeBlock(block []byte) ([]hpack.HeaderField, error) {
	var fields []hpack.HeaderField
	size := uint32(0)
	tooLarge := false
	var dec *hpack.Decoder
	dec = hpack.NewDecoder(MaxTableBytes, func(f hpack.HeaderField) {
		size += f.Size()
		if size > MaxHeaderListBytes {
			tooLarge = true
			dec.SetEmitEnabled(false)
			return
		}
		fields = append(fields, f)
	})
	dec.SetMaxStringLength(MaxStringBytes)
	_, err := dec.Write(block)
	if err == nil {
		err = dec.Close()
	}
	switch {
	case errors.Is(err, hpack.ErrStringLength):
		return nil, fmt.Errorf("%w: a header string is longer than %d bytes", ErrTooLarge, MaxStringBytes)
	case err != nil:
		return nil, fmt.Errorf("%w: header block: %w", ErrMalformed, err)
	case tooLarge:
		return nil, fmt.Errorf("%w: the header list is larger than %d bytes", ErrTooLarge, MaxHeaderListBytes)
	}
	return fields, nil
}

// checkField checks a field's name and value (RFC 9113, section 8.2).
func checkField(f hpack.HeaderField) error {
	name := strings.TrimPrefix(f.Name, ":")
	if name == "" {
		return fmt.Errorf("%w: a header with an empty name", ErrMalformed)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' || !isTokenByte(c) {
			return fmt.Errorf("%w: header name %q is not a lowercase token", ErrMalformed, f.Name)
		}
	}
	if i := strings.IndexAny(f.Value, "\x00\r\n"); i >= 0 {
		return fmt.Errorf("%w: header %s has a NUL, CR or LF in its value", ErrMalformed, f.Name)
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return fmt.Errorf("%w: %s is a connection-specific header, which HTTP/2 forbids", ErrMalformed, f.Name)
	case "te":
		if f.Value != "trailers" {
			return fmt.Errorf("%w: te %q; HTTP/2 allows only te: trailers", ErrMalformed, f.Value)
		}
	}
	return nil
}

func (r *Request) setPseudo(f hpack.HeaderField) error {
	var field *string
	switch f.Name {
	case ":method":
		field = &r.Method
	case ":scheme":
		field = &r.Scheme
	case ":authority":
		field = &r.Authority
	case ":path":
		field = &r.Path
	default:
		return fmt.Errorf("%w: %s is not a request pseudo-header", ErrMalformed, f.Name)
	}
	if *field != "" {
		return fmt.Errorf("%w: pseudo-header %s appears twice", ErrMalformed, f.Name)
	}
	if f.Value == "" {
		return fmt.Errorf("%w: pseudo-header %s is empty", ErrMalformed, f.Name)
	}
	*field = f.Value
	return nil
}

// check requires the pseudo-headers of a request (RFC 9113, section 8.3.1).
func (r *Request) check() error {
	switch {
	case r.Method == "":
		return fmt.Errorf("%w: the request has no :method", ErrMalformed)
	case r.Method == "CONNECT":
		if r.Authority == "" || r.Scheme != "" || r.Path != "" {
			return fmt.Errorf("%w: a CONNECT request has :authority and neither :scheme nor :path", ErrMalformed)
		}
	case r.Scheme == "" || r.Path == "":
		return fmt.Errorf("%w: a %s request needs :scheme and :path", ErrMalformed, r.Method)
	}
	return nil
}

// isGRPC reports whether a content-type is gRPC's: application/grpc,
// optionally followed by +format or ;parameters.
func isGRPC(contentTypes []string) bool {
	if len(contentTypes) != 1 {
		return false
	}
	ct := strings.ToLower(contentTypes[0])
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}
