package l7proxy

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/graylane/graylane/pkg/httphead"
	"github.com/graylane/graylane/pkg/service"
)

// TestFirstResponseLatency: the first response's latency covers the
// backend's time to answer, for HTTP/1.x and for HTTP/2, whose server
// sends its SETTINGS at once: the walk waits for the HEADERS frame.
func TestFirstResponseLatency(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}})
	h1 := &http.Transport{DisableKeepAlives: true}
	defer h1.CloseIdleConnections()
	if got := get(t, &http.Client{Transport: h1}, "http://"+e.addr+"/slow", nil); got != "stable" {
		t.Fatalf("HTTP/1.1 answered by %s", got)
	}
	h2, tr := h2cClient()
	defer tr.CloseIdleConnections()
	if got := get(t, h2, "http://"+e.addr+"/slow", map[string]string{"X-Canary": "v2"}); got != "canary" {
		t.Fatalf("HTTP/2 answered by %s", got)
	}
	waitFor(t, "both first responses", func() bool {
		return e.obs.Pool(service.Stable).Responses == 1 && e.obs.Pool(service.Canary).Responses == 1
	})
	for _, pool := range []service.Pool{service.Stable, service.Canary} {
		if pc := e.obs.Pool(pool); pc.ResponseTime < slowResponse {
			t.Errorf("%s: first response after %v, but the backend took %v", pool, pc.ResponseTime, slowResponse)
		}
	}
}

// h2Frames writes HTTP/2 frames as a backend would, header blocks
// encoded by one HPACK encoder for the connection.
type h2Frames struct {
	buf bytes.Buffer
	fr  *http2.Framer
	enc *hpack.Encoder
	blk bytes.Buffer
}

func newH2Frames() *h2Frames {
	f := &h2Frames{}
	f.fr = http2.NewFramer(&f.buf, nil)
	f.enc = hpack.NewEncoder(&f.blk)
	return f
}

func (f *h2Frames) block(fields ...string) []byte {
	f.blk.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		f.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(f.blk.Bytes())
}

// TestH2Response: the walk finds the first stream's response, one byte at
// a time, past SETTINGS and another stream's HEADERS (whose block fills
// HPACK's dynamic table), through padding, priority and CONTINUATION; it
// reports :status and, for gRPC, grpc-status from a Trailers-Only response
// or from the trailers after DATA.
func TestH2Response(t *testing.T) {
	cases := []struct {
		name       string
		write      func(f *h2Frames)
		status     int
		grpcStatus []int // the GRPCStatus calls
	}{{
		name: "grpc trailers",
		write: func(f *h2Frames) {
			f.fr.WriteSettings()
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, EndHeaders: true,
				BlockFragment: f.block(":status", "200", "content-type", "application/grpc", "x-shared", "abc")})
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
				BlockFragment: f.block(":status", "200", "content-type", "application/grpc", "x-shared", "abc")})
			f.fr.WriteData(1, false, []byte{0, 0, 0, 0, 2, 'h', 'i'})
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
				BlockFragment: f.block("grpc-status", "0", "grpc-message", "")})
		},
		status: 200, grpcStatus: []int{0},
	}, {
		name: "grpc trailers-only",
		write: func(f *h2Frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
				BlockFragment: f.block(":status", "200", "content-type", "application/grpc+proto", "grpc-status", "14")})
		},
		status: 200, grpcStatus: []int{14},
	}, {
		name: "padded, priority, continuation",
		write: func(f *h2Frames) {
			blk := f.block(":status", "503", "content-type", "text/plain", "x-long", strings.Repeat("v", 300))
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, PadLength: 7,
				Priority: http2.PriorityParam{StreamDep: 0, Weight: 15}, BlockFragment: blk[:10]})
			f.fr.WriteContinuation(1, false, blk[10:100])
			f.fr.WriteContinuation(1, true, blk[100:])
			f.fr.WriteData(1, true, []byte("down"))
		},
		status: 503,
	}, {
		name: "grpc without trailers",
		write: func(f *h2Frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true,
				BlockFragment: f.block(":status", "200", "content-type", "application/grpc")})
			f.fr.WriteData(1, true, []byte{0, 0, 0, 0, 0})
		},
		status: 200,
	}}
	for _, c := range cases {
		f := newH2Frames()
		c.write(f)
		in := f.buf.Bytes()
		obs := &Counters{}
		r := &responsePeek{obs: obs, sent: time.Now(), proto: httphead.HTTP2, stream: 1}
		done := -1
		for i := range in {
			if r.peek(in[i : i+1]) {
				done = i + 1
				break
			}
		}
		pc := obs.Pool(service.Stable)
		// A gRPC walk ends with the stream; another at its first block.
		if done < 0 || (c.grpcStatus != nil && done != len(in)) || pc.Responses != 1 || pc.Statuses[c.status] != 1 {
			t.Errorf("%s: done after %d of %d bytes; counts %+v; want one response with :status %d", c.name, done, len(in), pc, c.status)
		}
		var got []int
		for code, n := range pc.GRPCStatuses {
			for range n {
				got = append(got, code)
			}
		}
		if !slices.Equal(got, c.grpcStatus) {
			t.Errorf("%s: grpc-status reported %v, want %v", c.name, got, c.grpcStatus)
		}
	}
}

// TestH2ResponseBounds: a header block past h2MaxBlock, a push promise
// or an undecodable block end the walk without a panic or a report of a
// wrong status.
func TestH2ResponseBounds(t *testing.T) {
	for name, write := range map[string]func(f *h2Frames){
		"huge block": func(f *h2Frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: make([]byte, 12<<10)})
			f.fr.WriteContinuation(1, true, make([]byte, 8<<10))
		},
		"push promise": func(f *h2Frames) {
			f.fr.WritePushPromise(http2.PushPromiseParam{StreamID: 1, PromiseID: 2, EndHeaders: true, BlockFragment: f.block(":path", "/")})
		},
		"garbage block": func(f *h2Frames) {
			f.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, BlockFragment: []byte{0xff, 0xff, 0xff, 0xff, 0xff}})
		},
		"padding past the frame": func(f *h2Frames) {
			f.buf.Write([]byte{0, 0, 2, h2FrameHeaders, h2FlagPadded | h2FlagEndHeaders, 0, 0, 0, 1, 9, 0})
		},
	} {
		f := newH2Frames()
		write(f)
		obs := &Counters{}
		r := &responsePeek{obs: obs, sent: time.Now(), proto: httphead.HTTP2, stream: 1}
		if !r.peek(f.buf.Bytes()) {
			t.Errorf("%s: the walk goes on", name)
		}
		if pc := obs.Pool(service.Stable); len(pc.Statuses) != 0 || len(pc.GRPCStatuses) != 0 {
			t.Errorf("%s: reported %+v", name, pc)
		}
	}
}

// FuzzH2Response: whatever a backend sends, the walk ends or asks for
// more, without a panic, and reports at most one response and one
// grpc-status.
func FuzzH2Response(f *testing.F) {
	fr := newH2Frames()
	fr.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, EndHeaders: true, EndStream: true,
		BlockFragment: fr.block(":status", "200", "content-type", "application/grpc", "grpc-status", "2")})
	f.Add(fr.buf.Bytes())
	f.Add([]byte{0, 0, 1, h2FrameHeaders, h2FlagPriority | h2FlagEndHeaders, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		obs := &Counters{}
		r := &responsePeek{obs: obs, sent: time.Now(), proto: httphead.HTTP2, stream: 1}
		for len(b) > 0 {
			n := min(len(b), 7)
			if r.peek(b[:n]) {
				break
			}
			b = b[n:]
		}
		if pc := obs.Pool(service.Stable); pc.Responses > 1 || len(pc.GRPCStatuses) > 1 {
			t.Fatalf("reported %+v", pc)
		}
	})
}
