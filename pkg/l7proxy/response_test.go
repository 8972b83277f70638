package l7proxy

import (
	"net/http"
	"testing"
	"time"

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

// TestWalkH2: the HEADERS frame of the first stream is found one byte at
// a time, past other frames and other streams' HEADERS.
func TestWalkH2(t *testing.T) {
	frame := func(length int, typ byte, stream byte) []byte {
		f := []byte{0, 0, byte(length), typ, 0, 0, 0, 0, stream}
		return append(f, make([]byte, length)...)
	}
	var in []byte
	in = append(in, frame(6, 0x4, 0)...) // SETTINGS
	in = append(in, frame(4, 0x8, 0)...) // WINDOW_UPDATE
	in = append(in, frame(3, 0x1, 3)...) // HEADERS of stream 3
	in = append(in, frame(0, 0x4, 0)...) // SETTINGS ack
	want := len(in) + h2FrameHeaderLen   // the last byte of stream 1's frame header
	in = append(in, frame(5, 0x1, 1)...) // HEADERS of stream 1
	obs := &Counters{}
	r := &responsePeek{obs: obs, sent: time.Now(), proto: httphead.HTTP2, stream: 1}
	for i := range in {
		if r.peek(in[i : i+1]) {
			if i+1 != want {
				t.Errorf("found after %d bytes, want %d", i+1, want)
			}
			if pc := obs.Pool(service.Stable); pc.Responses != 1 {
				t.Errorf("responses %d", pc.Responses)
			}
			return
		}
	}
	t.Fatal("HEADERS of stream 1 not found")
}
