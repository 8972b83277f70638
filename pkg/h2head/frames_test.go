package h2head

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// The x/net/http2 Framer cannot be used here: importing that package
// needs golang.org/x/text listed in go.mod. Frames are laid out by this
// helper (RFC 9113, section 4.1) around header blocks from the real HPACK
// encoder; whole requests from a real client are in client_test.go.
func rawFrame(typ, flags byte, stream uint32, payload []byte) []byte {
	out := make([]byte, frameHeaderBytes, frameHeaderBytes+len(payload))
	out[0], out[1], out[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	out[3], out[4] = typ, flags
	binary.BigEndian.PutUint32(out[5:], stream)
	return append(out, payload...)
}

// encode is the header block of fields given as name, value pairs.
func encode(t testing.TB, pairs ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := enc.WriteField(hpack.HeaderField{Name: pairs[i], Value: pairs[i+1]}); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func get(t testing.TB, extra ...string) []byte {
	t.Helper()
	pairs := append([]string{":method", "GET", ":scheme", "http", ":authority", "a.example", ":path", "/x"}, extra...)
	return encode(t, pairs...)
}

// settings is a SETTINGS frame with SETTINGS_HEADER_TABLE_SIZE 65536,
// which concerns the client's decoder and must not change ours.
var settings = rawFrame(frameSettings, 0, 0, []byte{0, 1, 0, 1, 0, 0})

func conn(frames ...[]byte) []byte {
	return append([]byte(Preface), bytes.Join(frames, nil)...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParseFrames(t *testing.T) {
	block := get(t, "x-canary", "v2")
	tests := []struct {
		name string
		in   []byte
	}{
		{"headers", conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagEndStream, 1, block))},
		{"control frames first", conn(settings,
			rawFrame(frameSettings, flagAck, 0, nil),
			rawFrame(frameWindowUpdate, 0, 0, []byte{0, 0xf, 0, 1}),
			rawFrame(framePing, 0, 0, make([]byte, 8)),
			rawFrame(framePriority, 0, 3, []byte{0, 0, 0, 0, 16}),
			rawFrame(0xfa, 0x3, 9, []byte("an extension")),
			rawFrame(frameHeaders, flagEndHeaders|flagEndStream, 1, block))},
		{"padded", conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagEndStream|flagPadded, 1,
			cat([]byte{4}, block, make([]byte, 4))))},
		{"priority", conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagEndStream|flagPriority, 1,
			cat([]byte{0x80, 0, 0, 0, 200}, block)))},
		{"padded and priority", conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagEndStream|flagPadded|flagPriority, 1,
			cat([]byte{2, 0, 0, 0, 0, 15}, block, []byte{0, 0})))},
		{"continuation", conn(settings,
			rawFrame(frameHeaders, flagEndStream, 1, block[:3]),
			rawFrame(frameContinuation, 0, 1, block[3:10]),
			rawFrame(frameContinuation, 0, 1, nil),
			rawFrame(frameContinuation, flagEndHeaders, 1, block[10:]))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := cat(tt.in, rawFrame(frameData, flagEndStream, 1, []byte("body")))
			req, n, err := Parse(in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n != len(tt.in) {
				t.Errorf("consumed %d bytes; want %d", n, len(tt.in))
			}
			if req.Path != "/x" || req.Authority != "a.example" || req.Headers["x-canary"][0] != "v2" || !req.EndStream {
				t.Errorf("Parse = %+v", req)
			}
			for i := range n {
				if _, _, err := Parse(in[:i]); !errors.Is(err, ErrIncomplete) {
					t.Fatalf("Parse of the first %d bytes: %v; want ErrIncomplete", i, err)
				}
			}
		})
	}
}

func TestParseRejectsFrames(t *testing.T) {
	block := get(t)
	headers := rawFrame(frameHeaders, flagEndHeaders, 1, block)
	tests := []struct {
		name string
		in   []byte
		want error
		msg  string
	}{
		{"http/1", []byte("GET / HTTP/1.1\r\n\r\n"), ErrMalformed, "does not start with the HTTP/2 client preface"},
		{"partial preface", []byte("PRI * HTTP/1.1"), ErrMalformed, "client preface"},
		{"no settings first", conn(rawFrame(framePing, 0, 0, make([]byte, 8)), settings, headers), ErrMalformed, "followed by PING frame (stream 0, 8 bytes), not SETTINGS"},
		{"settings ack first", conn(rawFrame(frameSettings, flagAck, 0, nil), headers), ErrMalformed, "not SETTINGS"},
		{"settings on stream", conn(settings, rawFrame(frameSettings, 0, 1, nil), headers), ErrMalformed, "SETTINGS must be on stream 0"},
		{"settings odd length", conn(settings, rawFrame(frameSettings, 0, 0, make([]byte, 5)), headers), ErrMalformed, "multiple of 6"},
		{"settings ack with body", conn(settings, rawFrame(frameSettings, flagAck, 0, make([]byte, 6)), headers), ErrMalformed, "acknowledgement is empty"},
		{"ping on stream", conn(settings, rawFrame(framePing, 0, 1, make([]byte, 8)), headers), ErrMalformed, "PING is 8 bytes on stream 0"},
		{"window update on stream", conn(settings, rawFrame(frameWindowUpdate, 0, 1, []byte{0, 0, 1, 0}), headers), ErrMalformed, "stream 1 is not open yet"},
		{"window update zero", conn(settings, rawFrame(frameWindowUpdate, 0, 0, []byte{0, 0, 0, 0}), headers), ErrMalformed, "increment is 0"},
		{"priority on stream 0", conn(settings, rawFrame(framePriority, 0, 0, make([]byte, 5)), headers), ErrMalformed, "PRIORITY is 5 bytes"},
		{"data first", conn(settings, rawFrame(frameData, 0, 1, []byte("x")), headers), ErrMalformed, "DATA frame (stream 1, 1 bytes) before the stream was opened"},
		{"rst first", conn(settings, rawFrame(frameRSTStream, 0, 1, make([]byte, 4)), headers), ErrMalformed, "RST_STREAM"},
		{"push promise", conn(settings, rawFrame(framePushPromise, 0, 1, make([]byte, 4)), headers), ErrMalformed, "clients do not push"},
		{"goaway", conn(settings, rawFrame(frameGoAway, 0, 0, make([]byte, 8)), headers), ErrMalformed, "went away"},
		{"lone continuation", conn(settings, rawFrame(frameContinuation, flagEndHeaders, 1, block)), ErrMalformed, "without a HEADERS frame"},
		{"headers on stream 0", conn(settings, rawFrame(frameHeaders, flagEndHeaders, 0, block)), ErrMalformed, "HEADERS on stream 0"},
		{"headers on even stream", conn(settings, rawFrame(frameHeaders, flagEndHeaders, 2, block)), ErrMalformed, "HEADERS on even stream 2"},
		{"continuation on another stream", conn(settings, rawFrame(frameHeaders, 0, 1, block[:2]), rawFrame(frameContinuation, flagEndHeaders, 3, block[2:])),
			ErrMalformed, "CONTINUATION on stream 3, but the header block is stream 1's"},
		{"ping inside the block", conn(settings, rawFrame(frameHeaders, 0, 1, block[:2]), rawFrame(framePing, 0, 0, make([]byte, 8))),
			ErrMalformed, "PING frame (stream 0, 8 bytes) where the CONTINUATION of stream 1's header block must come"},
		{"frame too long", conn(settings, rawFrame(frameHeaders, flagEndHeaders, 1, make([]byte, MaxFrameBytes+1))), ErrTooLarge, "frame 2 (HEADERS) is 16385 bytes long"},
		{"frame too long, header only", conn(settings, rawFrame(frameHeaders, flagEndHeaders, 1, make([]byte, MaxFrameBytes+1))[:9]), ErrTooLarge, "is 16385 bytes long"},
		{"padding too long", conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagPadded, 1, cat([]byte{200}, block))), ErrMalformed, "padding of 200 bytes"},
		{"padded empty", conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagPadded, 1, nil)), ErrMalformed, "without a pad length"},
		{"priority short", conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagPriority, 1, []byte{0, 0})), ErrMalformed, "too short for its priority"},
		{"depends on itself", conn(settings, rawFrame(frameHeaders, flagEndHeaders|flagPriority, 1, cat([]byte{0, 0, 0, 1, 9}, block))), ErrMalformed, "stream 1 depends on itself"},
		{"too many bytes", conn(settings, bytes.Repeat(rawFrame(framePing, 0, 0, make([]byte, 8)), MaxBytes/17+1), headers), ErrTooLarge, "32768 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, n, err := Parse(tt.in)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("Parse = %d, %v; want %v saying %q", n, err, tt.want, tt.msg)
			}
			if n != 0 {
				t.Errorf("consumed %d bytes on error", n)
			}
		})
	}
}
