package tlshello

import (
	"errors"
	"fmt"
)

// Extension types read here (RFC 6066, RFC 7301, RFC 8446).
const (
	extServerName        = 0
	extALPN              = 16
	extSupportedVersions = 43
	nameTypeHostName     = 0
)

// cursor reads big-endian fields off a byte string.
type cursor struct {
	b []byte
}

func (c *cursor) empty() bool { return len(c.b) == 0 }

func (c *cursor) bytes(n int) ([]byte, bool) {
	if n > len(c.b) {
		return nil, false
	}
	out := c.b[:n]
	c.b = c.b[n:]
	return out, true
}

func (c *cursor) uint8() (int, bool) {
	b, ok := c.bytes(1)
	if !ok {
		return 0, false
	}
	return int(b[0]), true
}

func (c *cursor) uint16() (int, bool) {
	b, ok := c.bytes(2)
	if !ok {
		return 0, false
	}
	return int(b[0])<<8 | int(b[1]), true
}

// vector reads a length-prefixed vector; the length takes width bytes.
func (c *cursor) vector(width int) (cursor, bool) {
	var n int
	var ok bool
	if width == 1 {
		n, ok = c.uint8()
	} else {
		n, ok = c.uint16()
	}
	if !ok {
		return cursor{}, false
	}
	b, ok := c.bytes(n)
	return cursor{b: b}, ok
}

// parseClientHello reads a ClientHello's body (RFC 8446, section 4.1.2).
func parseClientHello(body []byte) (Hello, error) {
	c := cursor{b: body}
	var h Hello
	version, ok := c.uint16()
	if !ok {
		return Hello{}, errors.New("ClientHello too short for its version")
	}
	h.LegacyVersion = uint16(version)
	if _, ok := c.bytes(32); !ok {
		return Hello{}, errors.New("ClientHello too short for its random")
	}
	if sessionID, ok := c.vector(1); !ok || len(sessionID.b) > 32 {
		return Hello{}, errors.New("ClientHello session ID is longer than 32 bytes or than the hello")
	}
	suites, ok := c.vector(2)
	if !ok || len(suites.b) < 2 || len(suites.b)%2 != 0 {
		return Hello{}, fmt.Errorf("ClientHello cipher suites of %d bytes: not a non-empty list of 2-byte suites within the hello", len(suites.b))
	}
	if methods, ok := c.vector(1); !ok || methods.empty() {
		return Hello{}, errors.New("ClientHello compression methods are empty or longer than the hello")
	}
	if c.empty() {
		return h, nil // a hello without extensions
	}
	extensions, ok := c.vector(2)
	if !ok || !c.empty() {
		return Hello{}, errors.New("ClientHello extensions' length does not match the rest of the hello")
	}
	if err := h.readExtensions(extensions); err != nil {
		return Hello{}, err
	}
	return h, nil
}

func (h *Hello) readExtensions(c cursor) error {
	seen := make(map[int]bool)
	for !c.empty() {
		typ, ok := c.uint16()
		data, ok2 := c.vector(2)
		if !ok || !ok2 {
			return errors.New("an extension is longer than the extension list")
		}
		if seen[typ] {
			return fmt.Errorf("extension %d appears twice", typ)
		}
		seen[typ] = true
		var err error
		switch typ {
		case extServerName:
			h.ServerName, err = parseServerName(data)
		case extALPN:
			h.ALPN, err = parseALPN(data)
		case extSupportedVersions:
			h.SupportedVersions, err = parseSupportedVersions(data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseServerName reads a server_name extension (RFC 6066, section 3).
func parseServerName(data cursor) (string, error) {
	list, ok := data.vector(2)
	if !ok || !data.empty() || list.empty() {
		return "", errors.New("server_name: the name list's length does not match the extension")
	}
	host := ""
	for !list.empty() {
		typ, ok := list.uint8()
		name, ok2 := list.vector(2)
		switch {
		case !ok || !ok2:
			return "", errors.New("server_name: a name is longer than the list")
		case typ != nameTypeHostName:
			continue // other name types are skipped
		case host != "":
			return "", errors.New("server_name: two host names")
		case name.empty():
			return "", errors.New("server_name: an empty host name")
		}
		for _, b := range name.b {
			if b <= ' ' || b >= 0x7f {
				return "", fmt.Errorf("server_name: host name has byte 0x%02x; names are printable ASCII", b)
			}
		}
		host = string(name.b)
	}
	return host, nil
}

// parseALPN reads an application_layer_protocol_negotiation extension
// (RFC 7301, section 3.1).
func parseALPN(data cursor) ([]string, error) {
	list, ok := data.vector(2)
	if !ok || !data.empty() || list.empty() {
		return nil, errors.New("ALPN: the protocol list's length does not match the extension")
	}
	var protocols []string
	for !list.empty() {
		name, ok := list.vector(1)
		if !ok || name.empty() {
			return nil, errors.New("ALPN: a protocol name is empty or longer than the list")
		}
		protocols = append(protocols, string(name.b))
	}
	return protocols, nil
}

// parseSupportedVersions reads a ClientHello's supported_versions
// extension (RFC 8446, section 4.2.1).
func parseSupportedVersions(data cursor) ([]uint16, error) {
	list, ok := data.vector(1)
	if !ok || !data.empty() || len(list.b) < 2 || len(list.b)%2 != 0 {
		return nil, errors.New("supported_versions: not a non-empty list of 2-byte versions filling the extension")
	}
	var versions []uint16
	for !list.empty() {
		v, _ := list.uint16()
		versions = append(versions, uint16(v))
	}
	return versions, nil
}
