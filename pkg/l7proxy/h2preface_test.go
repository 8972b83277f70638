package l7proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/graylane/graylane/pkg/h2head"
	"github.com/graylane/graylane/pkg/service"
)

// startGRPC starts a grpc-go server with the health service; every
// answer carries the header metadata x-backend: name. The listener
// records what the server reads. (A grpc-go server ignores a SETTINGS
// acknowledgement it did not ask for; Go's net/http server ends the
// connection with PROTOCOL_ERROR, which TestH2CPriorKnowledge would see.)
func startGRPC(t *testing.T, name string) (netip.AddrPort, *recordingListener) {
	t.Helper()
	ln := &recordingListener{Listener: listenTCP(t)}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		grpc.SetHeader(ctx, metadata.Pairs("x-backend", name))
		return next(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ln)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return addrPort(ln.Addr()), ln
}

// grpcEnv is a proxy in front of two gRPC backends, canary for the
// metadata x-canary: v2.
func grpcEnv(t *testing.T, opts Options) (*env, []*recordingListener) {
	rule := service.MatchRule{GRPCMetadata: &service.FieldMatch{Name: "x-canary", Value: "v2"}, Pool: service.Canary}
	stable, sln := startGRPC(t, "stable")
	canary, cln := startGRPC(t, "canary")
	return newEnv(t, envConfig{rules: []service.MatchRule{rule}, opts: opts, stable: stable, canary: canary}),
		[]*recordingListener{sln, cln}
}

// recordingListener keeps what each accepted connection read.
type recordingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []*bytes.Buffer
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns = append(l.conns, new(bytes.Buffer))
	return &recordingConn{Conn: c, l: l, b: l.conns[len(l.conns)-1]}, nil
}

type recordingConn struct {
	net.Conn
	l *recordingListener
	b *bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	c.b.Write(p[:n])
	return n, err
}

// acks counts the SETTINGS acknowledgements in what each connection
// read, walking its HTTP/2 frames.
func (l *recordingListener) acks() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, b := range l.conns {
		n, buf := 0, b.Bytes()[min(b.Len(), len(h2head.Preface)):]
		for len(buf) >= h2FrameHeaderLen {
			length := int(buf[0])<<16 | int(buf[1])<<8 | int(buf[2])
			if buf[3] == h2FrameSettings && buf[4]&h2FlagAck != 0 {
				n++
			}
			buf = buf[min(len(buf), h2FrameHeaderLen+length):]
		}
		out = append(out, n)
	}
	return out
}

// TestGRPCClient: a grpc-go client, which waits for the server's
// preface before its first HEADERS, is decided by its metadata; its
// later calls on the connection go where the first went. Each backend
// connection carries one SETTINGS acknowledgement, of the backend's own
// SETTINGS: the client's acknowledgement of the proxy's was removed.
func TestGRPCClient(t *testing.T) {
	checkLeaks(t)
	e, lns := grpcEnv(t, Options{HeadTimeout: 2 * time.Second})
	for _, first := range []string{"canary", "stable"} {
		cc, err := grpc.NewClient("passthrough:///"+e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			canary := (first == "canary") == (i == 0) // later calls carry the other metadata
			if got, err := healthCheck(cc, canary); err != nil || got != first {
				t.Fatalf("call %d (first %s): answered by %q, %v", i+1, first, got, err)
			}
		}
		cc.Close()
	}
	if c, s := e.obs.Pool(service.Canary), e.obs.Pool(service.Stable); c.Decided != 1 || s.Decided != 1 || c.Rules[0] != 1 {
		t.Errorf("decisions: canary %+v, stable %+v; want one connection each, the canary's by rule 0", c, s)
	}
	for i, ln := range lns {
		waitFor(t, "the client's acknowledgement of the backend's SETTINGS", func() bool {
			a := ln.acks()
			return len(a) == 1 && a[0] >= 1
		})
		if a := ln.acks(); a[0] != 1 {
			t.Errorf("backend %d read %d SETTINGS acknowledgements, want 1", i, a[0])
		}
	}
}

// healthCheck calls grpc.health.v1.Health/Check on cc, with the
// metadata x-canary: v2 if canary, and returns the answering backend.
func healthCheck(cc *grpc.ClientConn, canary bool) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if canary {
		ctx = metadata.AppendToOutgoingContext(ctx, "x-canary", "v2")
	}
	var md metadata.MD
	resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
	if err != nil {
		return "", err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING || len(md.Get("x-backend")) != 1 {
		return "", fmt.Errorf("status %v, header %v", resp.GetStatus(), md)
	}
	return md.Get("x-backend")[0], nil
}

// TestXNetH2CToGRPC: an x/net/http2 client with prior knowledge sends
// its preface, SETTINGS and HEADERS at once and acknowledges the proxy's
// SETTINGS later; a grpc-go server behind the proxy answers it, decided
// by the header.
func TestXNetH2CToGRPC(t *testing.T) {
	checkLeaks(t)
	e, _ := grpcEnv(t, Options{})
	for _, canary := range []bool{true, false} {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		// An empty HealthCheckRequest: not compressed, length 0.
		req, err := http.NewRequest("POST", "http://"+e.addr+"/grpc.health.v1.Health/Check", bytes.NewReader(make([]byte, 5)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		want := "stable"
		if canary {
			req.Header.Set("X-Canary", "v2")
			want = "canary"
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if got, st := resp.Header.Get("X-Backend"), resp.Trailer.Get("Grpc-Status"); got != want || st != "0" {
			t.Errorf("answered by %q with grpc-status %q, want %s and 0", got, st, want)
		}
		tr.CloseIdleConnections()
	}
}

// h2Raw is an HTTP/2 client written frame by frame.
type h2Raw struct {
	c  net.Conn
	fr *http2.Framer
}

func dialH2(t *testing.T, addr string) *h2Raw {
	c := dialRaw(t, addr)
	if _, err := io.WriteString(c, h2head.Preface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return &h2Raw{c: c, fr: fr}
}

// headers sends GET / on stream 1 with x-canary: v2.
func (r *h2Raw) headers(t *testing.T) {
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}, {"x-canary", "v2"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: true, EndHeaders: true})
	if err != nil {
		t.Fatal(err)
	}
}

// serverPreface reads the proxy's SETTINGS: empty, no ACK.
func (r *h2Raw) serverPreface(t *testing.T) {
	f, err := r.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := f.(*http2.SettingsFrame); !ok || s.IsAck() || s.NumSettings() != 0 {
		t.Fatalf("first frame %v, want an empty SETTINGS", f)
	}
}

// TestH2NoAck: a client that sends its head but never acknowledges the
// proxy's SETTINGS is cut at the head timeout, undecided.
func TestH2NoAck(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}, opts: Options{HeadTimeout: time.Second}})
	r := dialH2(t, e.addr)
	r.headers(t)
	start := time.Now()
	ans, err := readAnswer(r.c)
	if ans != string(serverSettings[:]) || err != nil {
		t.Errorf("answer %q (%v), want the proxy's SETTINGS only", ans, err)
	}
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Errorf("cut after %v, before the head timeout", d)
	}
	waitFor(t, "a timeout cut", func() bool { return e.obs.CutCount(ReasonTimeout) == 1 })
	if c := e.obs.Pool(service.Canary); c.Decided != 0 {
		t.Errorf("%d decided", c.Decided)
	}
}

// TestH2PingBeforeHeaders: a PING before the first HEADERS is forwarded
// with the head, and the backend's answer reaches the client after the
// backend's own SETTINGS; the client acknowledges those itself.
func TestH2PingBeforeHeaders(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}})
	r := dialH2(t, e.addr)
	ping := [8]byte{'g', 'r', 'a', 'y', 'l', 'a', 'n', 'e'}
	if err := r.fr.WritePing(false, ping); err != nil {
		t.Fatal(err)
	}
	r.serverPreface(t)
	if err := r.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	r.headers(t)
	var pong, settings bool
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("after pong %t, settings %t: %v", pong, settings, err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				settings = true
				if err := r.fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.PingFrame:
			pong = pong || (f.IsAck() && f.Data == ping)
		case *http2.MetaHeadersFrame:
			backend := ""
			for _, hf := range f.RegularFields() {
				if hf.Name == "x-backend" {
					backend = hf.Value
				}
			}
			if f.PseudoValue("status") != "200" || f.StreamID != 1 || backend != "canary" {
				t.Errorf("response on stream %d: %v", f.StreamID, f.Fields)
			}
			if !pong || !settings {
				t.Errorf("response before the backend's SETTINGS (%t) and PING answer (%t)", settings, pong)
			}
			return
		}
	}
}

// until reads frames, acknowledging the server's SETTINGS, until done
// returns true for one; a GOAWAY fails the test.
func (r *h2Raw) until(t *testing.T, done func(http2.Frame) bool) {
	t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v: %q", f.ErrCode, f.DebugData())
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := r.fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		}
		if done(f) {
			return
		}
	}
}

// TestH2BodyBeforeAck: a client that sends more than MaxHeadBytes after
// its HEADERS (a request body) before it acknowledges the proxy's
// SETTINGS is decided when the buffer is full, and the rest is relayed
// frame by frame until the acknowledgement, which is dropped even when it
// arrives in two pieces. The backend gets the whole body and no stray
// acknowledgement: Go's server would answer that with GOAWAY once the
// client acknowledged its own SETTINGS.
func TestH2BodyBeforeAck(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}, opts: Options{MaxHeadBytes: 4096}})
	r := dialH2(t, e.addr)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}, {"x-canary", "v2"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte{'b'}, 5000)
	for range 4 { // 20000 bytes, past MaxHeadBytes, within the initial window
		if err := r.fr.WriteData(1, false, chunk); err != nil {
			t.Fatal(err)
		}
	}
	r.serverPreface(t)
	time.Sleep(50 * time.Millisecond) // the proxy reads the body, decides and relays
	if c := e.obs.Pool(service.Canary); c.Decided != 1 {
		t.Errorf("decided %d before the acknowledgement, want 1 (the buffer was full)", c.Decided)
	}
	for _, part := range [][]byte{settingsAckFrame[:4], settingsAckFrame[4:]} {
		if _, err := r.c.Write(part); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := r.fr.WriteData(1, true, chunk); err != nil {
		t.Fatal(err)
	}
	var body []byte
	r.until(t, func(f http2.Frame) bool {
		if d, ok := f.(*http2.DataFrame); ok && d.StreamID == 1 {
			body = append(body, d.Data()...)
			return d.StreamEnded()
		}
		return false
	})
	if string(body) != "canary" {
		t.Errorf("answer %q, want canary's", body)
	}
	ping := [8]byte{1}
	if err := r.fr.WritePing(false, ping); err != nil {
		t.Fatal(err)
	}
	r.until(t, func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() && p.Data == ping })
}
