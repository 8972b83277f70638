package api

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// serve runs h on a unix socket for the test and returns a client of it
// with timeout.
func serve(t *testing.T, h http.HandlerFunc, timeout time.Duration) *Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := NewClient(ClientOptions{Server: "unix://" + sock, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCaptureQuery(t *testing.T) {
	for _, tt := range []struct {
		q    CaptureRequest
		want string
	}{
		{CaptureRequest{}, ""},
		{CaptureRequest{Percent: "1%", Duration: 90 * time.Second, Count: 5, Node: "g 1", Snaplen: 128, Payload: true, Redact: true},
			"?percent=1%25&duration=1m30s&count=5&node=g+1&snaplen=128&payload=true&redact=true"},
		{CaptureRequest{Count: 1, Redact: true}, "?count=1&redact=true"},
	} {
		if got := tt.q.query(); got != tt.want {
			t.Errorf("%+v: query %q, want %q", tt.q, got, tt.want)
		}
	}
}

// TestCapture: a 200 answer is the stream, unread, whatever its length
// in time; a refusal is an *Error with the agent's message.
func TestCapture(t *testing.T) {
	var got string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got = r.Method + " " + r.URL.RequestURI()
		if r.URL.Path == "/v1/services/nope/capture" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"error":"service \"nope\" does not exist"}`)
			return
		}
		w.Header().Set("Content-Type", "application/x-pcapng")
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		time.Sleep(300 * time.Millisecond) // longer than the client's timeout
		io.WriteString(w, " second")
	}, 200*time.Millisecond)
	rc, err := c.Capture(context.Background(), "auth", CaptureRequest{Percent: "5", Count: 3})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || string(data) != "first second" {
		t.Fatalf("stream %q, %v; want %q", data, err, "first second")
	}
	if want := "GET /v1/services/auth/capture?percent=5&count=3"; got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	_, err = c.Capture(context.Background(), "nope", CaptureRequest{})
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound || ae.Message != `service "nope" does not exist` {
		t.Fatalf("refusal: %v (%#v), want the agent's 404", err, ae)
	}
}

// TestCaptureBeginTimeout: an agent that does not begin its answer within
// the client's timeout (plus the capture's duration) is a timeout.
func TestCaptureBeginTimeout(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}, 50*time.Millisecond)
	start := time.Now()
	_, err := c.Capture(context.Background(), "auth", CaptureRequest{Duration: 100 * time.Millisecond})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want a timeout that is not a cancellation", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout plus the duration", d)
	}
}

// TestCaptureCancel: cancelling the context ends the stream.
func TestCaptureCancel(t *testing.T) {
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "header")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	rc, err := c.Capture(ctx, "auth", CaptureRequest{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(rc, buf); err != nil || string(buf) != "header" {
		t.Fatalf("read %q, %v", buf, err)
	}
	cancel()
	if _, err := io.ReadAll(rc); !errors.Is(err, context.Canceled) {
		t.Fatalf("after cancel: %v, want context.Canceled", err)
	}
}

func TestSetMirror(t *testing.T) {
	var got string
	c := serve(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got = r.Method + " " + r.URL.RequestURI() + " " + string(body)
		io.WriteString(w, `{"index":7}`)
	}, time.Second)
	for _, tt := range []struct {
		m    MirrorRequest
		o    WriteOptions
		want string
	}{
		{MirrorRequest{Percent: "1%", To: "capture", Snaplen: 256}, WriteOptions{},
			`PUT /v1/services/auth/mirror {"percent":"1%","to":"capture","snaplen":256}`},
		{MirrorRequest{Off: true}, WriteOptions{WaitApplied: true, Timeout: time.Second},
			`PUT /v1/services/auth/mirror?wait=applied&timeout=1s {"off":true}`},
	} {
		w, err := c.SetMirror(context.Background(), "auth", tt.m, tt.o)
		if err != nil || w.Index != 7 {
			t.Fatalf("%+v: %+v, %v", tt.m, w, err)
		}
		if got != tt.want {
			t.Errorf("request %s, want %s", got, tt.want)
		}
	}
}
