package h2head

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// checkControlFrame checks a frame that comes before the first HEADERS
// frame: only connection-level frames and PRIORITY may.
func checkControlFrame(f frame) error {
	switch f.typ {
	case frameSettings:
		return checkSettings(f)
	case framePing:
		if f.stream != 0 || f.length != 8 {
			return fmt.Errorf("%s: PING is 8 bytes on stream 0", describe(f))
		}
	case frameWindowUpdate:
		return checkWindowUpdate(f)
	case framePriority:
		if f.stream == 0 || f.length != 5 {
			return fmt.Errorf("%s: PRIORITY is 5 bytes on a stream other than 0", describe(f))
		}
	case frameContinuation:
		return fmt.Errorf("%s comes without a HEADERS frame before it", describe(f))
	case frameData, frameRSTStream:
		return fmt.Errorf("%s before the stream was opened by HEADERS", describe(f))
	case framePushPromise:
		return fmt.Errorf("%s: clients do not push", describe(f))
	case frameGoAway:
		return fmt.Errorf("%s: the client went away before its first request", describe(f))
	}
	return nil // frames of unknown types are ignored (RFC 9113, section 5.5)
}

func checkSettings(f frame) error {
	switch {
	case f.stream != 0:
		return fmt.Errorf("%s: SETTINGS must be on stream 0", describe(f))
	case f.flags&flagAck != 0 && f.length != 0:
		return fmt.Errorf("%s: a SETTINGS acknowledgement is empty", describe(f))
	case f.length%6 != 0:
		return fmt.Errorf("%s: SETTINGS is a multiple of 6 bytes long", describe(f))
	}
	return nil
}

func checkWindowUpdate(f frame) error {
	switch {
	case f.length != 4:
		return fmt.Errorf("%s: WINDOW_UPDATE is 4 bytes", describe(f))
	case f.stream != 0:
		return fmt.Errorf("%s: stream %d is not open yet", describe(f), f.stream)
	case binary.BigEndian.Uint32(f.payload)&0x7fffffff == 0:
		return fmt.Errorf("%s: the increment is 0", describe(f))
	}
	return nil
}

// checkHeadersFrame checks the stream of the first HEADERS frame.
func checkHeadersFrame(f frame) error {
	switch {
	case f.stream == 0:
		return fmt.Errorf("%w: HEADERS on stream 0, which carries no requests", ErrMalformed)
	case f.stream%2 == 0:
		return fmt.Errorf("%w: HEADERS on even stream %d; clients open odd streams", ErrMalformed, f.stream)
	}
	return nil
}

// headerBlock returns the header block fragment of the HEADERS frame
// first joined with those of the CONTINUATION frames after it.
func (r *reader) headerBlock(first frame) ([]byte, error) {
	fragment, err := headersFragment(first)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	block := append([]byte(nil), fragment...)
	for last := first; last.flags&flagEndHeaders == 0; {
		f, err := r.next()
		if err != nil {
			return nil, err
		}
		switch {
		case r.pos > MaxBytes:
			return nil, fmt.Errorf("%w: no end of the first header block in %d bytes", ErrTooLarge, MaxBytes)
		case f.typ != frameContinuation:
			return nil, fmt.Errorf("%w: %s where the CONTINUATION of stream %d's header block must come",
				ErrMalformed, describe(f), first.stream)
		case f.stream != first.stream:
			return nil, fmt.Errorf("%w: CONTINUATION on stream %d, but the header block is stream %d's",
				ErrMalformed, f.stream, first.stream)
		}
		block = append(block, f.payload...)
		last = f
	}
	return block, nil
}

// headersFragment strips a HEADERS frame's padding and priority fields.
func headersFragment(f frame) ([]byte, error) {
	p := f.payload
	padding := 0
	if f.flags&flagPadded != 0 {
		if len(p) < 1 {
			return nil, errors.New("PADDED HEADERS frame without a pad length")
		}
		padding = int(p[0])
		p = p[1:]
	}
	if f.flags&flagPriority != 0 {
		if len(p) < 5 {
			return nil, errors.New("HEADERS frame with the PRIORITY flag is too short for its priority fields")
		}
		if binary.BigEndian.Uint32(p)&0x7fffffff == f.stream {
			return nil, fmt.Errorf("stream %d depends on itself", f.stream)
		}
		p = p[5:]
	}
	if padding > len(p) {
		return nil, fmt.Errorf("HEADERS frame's padding of %d bytes is longer than what follows it (%d)", padding, len(p))
	}
	return p[:len(p)-padding], nil
}

func typeName(t byte) string {
	names := [...]string{"DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS",
		"PUSH_PROMISE", "PING", "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"}
	if int(t) < len(names) {
		return names[t]
	}
	return fmt.Sprintf("frame type 0x%02x", t)
}

// describe names a frame for an error message.
func describe(f frame) string {
	return fmt.Sprintf("%s frame (stream %d, %d bytes)", typeName(f.typ), f.stream, f.length)
}
