// Package tlshello reads a TLS ClientHello from the first bytes of a
// connection: the server name (SNI), the ALPN protocols and the versions
// offered, so that the agent can decide a TLS connection's pool by its
// server name without terminating TLS. It never writes: the caller
// forwards the bytes it buffered, unchanged, to the backend it chose.
//
// Bounds: the records that carry the ClientHello, headers included, take
// at most MaxBytes. The handshake message may span several records
// (RFC 8446, section 5.1); they must all be handshake records, and the
// ClientHello must end its last record. Before the hello is complete Parse
// returns ErrIncomplete; past the bound, ErrTooLarge.
//
// Not supported: SSL 2.0-style hellos, and hellos encrypted with ECH (the
// outer, public name is what the server_name extension then shows).
package tlshello

import (
	"errors"
	"fmt"
)

// MaxBytes bounds the records of a ClientHello. Hellos of today's clients,
// post-quantum key shares included, take under 2 KiB.
const MaxBytes = 16 << 10

// TLS record and handshake constants (RFC 8446).
const (
	recordHeaderBytes    = 5
	handshakeHeaderBytes = 4
	maxRecordPayload     = 1 << 14
	typeHandshake        = 22
	typeClientHello      = 1
)

// Errors of Parse; the errors returned wrap one of these.
var (
	// ErrIncomplete means the ClientHello has not ended yet: read more bytes.
	ErrIncomplete = errors.New("incomplete TLS ClientHello: read more bytes")
	// ErrTooLarge means the ClientHello would pass MaxBytes.
	ErrTooLarge = errors.New("TLS ClientHello too large")
	// ErrMalformed means the bytes are not a valid TLS ClientHello.
	ErrMalformed = errors.New("malformed TLS ClientHello")
)

// Hello is what the agent needs of a ClientHello.
type Hello struct {
	// LegacyVersion is the version field of the hello itself: 0x0303
	// (TLS 1.2) for TLS 1.3 clients, which list their versions in
	// SupportedVersions.
	LegacyVersion uint16
	// SupportedVersions lists the supported_versions extension as sent,
	// GREASE values included; empty when the hello has none.
	SupportedVersions []uint16
	// ServerName is the host_name of the server_name extension; empty
	// when the client sent none (as when it connects to an IP address).
	ServerName string
	// ALPN lists the application protocols offered, in order of the
	// client's preference ("h2", "http/1.1").
	ALPN []string
}

// MaxVersion is the highest version the client offers, GREASE values
// (RFC 8701) left out.
func (h Hello) MaxVersion() uint16 {
	if len(h.SupportedVersions) == 0 {
		return h.LegacyVersion
	}
	best := uint16(0)
	for _, v := range h.SupportedVersions {
		if !isGREASE(v) && v > best {
			best = v
		}
	}
	return best
}

// isGREASE reports the reserved values 0x0a0a, 0x1a1a, ... 0xfafa.
func isGREASE(v uint16) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }

// Parse reads the ClientHello at the start of buf and returns it and the
// bytes of the records that carry it. Errors wrap ErrIncomplete,
// ErrTooLarge or ErrMalformed; on error consumed is 0.
func Parse(buf []byte) (hello Hello, consumed int, err error) {
	msg, consumed, err := handshakeMessage(buf)
	if err != nil {
		return Hello{}, 0, err
	}
	hello, err = parseClientHello(msg[handshakeHeaderBytes:])
	if err != nil {
		return Hello{}, 0, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return hello, consumed, nil
}

// handshakeMessage joins the fragments of the records at the start of buf
// until they hold a whole ClientHello message, and returns the message
// with its header and the bytes of those records.
func handshakeMessage(buf []byte) (msg []byte, consumed int, err error) {
	pos := 0
	for record := 1; ; record++ {
		if len(buf)-pos < recordHeaderBytes {
			return nil, 0, incomplete(pos + recordHeaderBytes)
		}
		length, err := checkRecordHeader(buf[pos:pos+recordHeaderBytes], record)
		if err != nil {
			return nil, 0, err
		}
		if len(buf)-pos-recordHeaderBytes < length {
			return nil, 0, incomplete(pos + recordHeaderBytes + length)
		}
		pos += recordHeaderBytes
		msg = append(msg, buf[pos:pos+length]...)
		pos += length
		if pos > MaxBytes {
			return nil, 0, fmt.Errorf("%w: the ClientHello's records pass %d bytes", ErrTooLarge, MaxBytes)
		}
		done, err := messageDone(msg)
		if err != nil || done {
			return msg, pos, err
		}
	}
}

func incomplete(need int) error {
	if need > MaxBytes {
		return fmt.Errorf("%w: the ClientHello's records pass %d bytes", ErrTooLarge, MaxBytes)
	}
	return ErrIncomplete
}

// checkRecordHeader checks one record header and returns its length.
func checkRecordHeader(h []byte, record int) (int, error) {
	typ, major, length := h[0], h[1], int(h[3])<<8|int(h[4])
	switch {
	case typ != typeHandshake && record == 1:
		return 0, fmt.Errorf("%w: record type %d (%s) is not a handshake", ErrMalformed, typ, recordTypeName(typ))
	case typ != typeHandshake:
		return 0, fmt.Errorf("%w: record %d is of type %d (%s) before the ClientHello ended", ErrMalformed, record, typ, recordTypeName(typ))
	case major != 3:
		return 0, fmt.Errorf("%w: record %d has version 0x%02x%02x, not TLS", ErrMalformed, record, h[1], h[2])
	case length == 0:
		return 0, fmt.Errorf("%w: record %d is an empty handshake record", ErrMalformed, record)
	case length > maxRecordPayload:
		return 0, fmt.Errorf("%w: record %d is %d bytes long, over the TLS limit of %d", ErrMalformed, record, length, maxRecordPayload)
	}
	return length, nil
}

// messageDone reports whether msg holds a whole ClientHello message and
// checks what it can of it so far.
func messageDone(msg []byte) (bool, error) {
	if len(msg) >= 1 && msg[0] != typeClientHello {
		return false, fmt.Errorf("%w: handshake message type %d (%s) is not a ClientHello", ErrMalformed, msg[0], handshakeTypeName(msg[0]))
	}
	if len(msg) < handshakeHeaderBytes {
		return false, nil
	}
	length := int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])
	switch total := handshakeHeaderBytes + length; {
	case total+recordHeaderBytes > MaxBytes:
		return false, fmt.Errorf("%w: a ClientHello of %d bytes passes the bound of %d", ErrTooLarge, length, MaxBytes)
	case len(msg) > total:
		return false, fmt.Errorf("%w: %d bytes follow the ClientHello in its record", ErrMalformed, len(msg)-total)
	case len(msg) == total:
		return true, nil
	}
	return false, nil
}

func recordTypeName(t byte) string {
	switch t {
	case 20:
		return "change_cipher_spec"
	case 21:
		return "alert"
	case 22:
		return "handshake"
	case 23:
		return "application_data"
	}
	return "unknown"
}

func handshakeTypeName(t byte) string {
	switch t {
	case 1:
		return "client_hello"
	case 2:
		return "server_hello"
	case 4:
		return "new_session_ticket"
	case 11:
		return "certificate"
	}
	return "other"
}
