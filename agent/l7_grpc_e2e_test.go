package agent_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/graylane/graylane/internal/netlab"
)

// startGRPC serves gRPC (the standard health service) on port
// l7PortGRPC of h.Addr4 until the test ends; every answer carries the
// header metadata x-backend: h's name.
func startGRPC(t *testing.T, h *netlab.Host) {
	t.Helper()
	ln, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, l7PortGRPC).String())
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		grpc.SetHeader(ctx, metadata.Pairs("x-backend", h.Name))
		return next(ctx, req)
	}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
}

// grpcMany makes n health checks (grpc.health.v1.Health/Check) through
// vip, one connection each, with metadata x-canary: canary (none when
// empty), and counts the backends that answered.
//
// The client is golang.org/x/net/http2 speaking gRPC's framing (h2c,
// prior knowledge), not grpc-go's: a grpc-go client waits for the
// server's SETTINGS before it sends its first HEADERS (error reading
// server preface), while the L7 proxy waits for that HEADERS before it
// connects to a backend, so it is cut at the head timeout. Making
// pkg/l7proxy answer the preface itself is what a grpc-go client needs.
// The server is grpc-go's.
func (e *env) grpcMany(t *testing.T, vip netip.AddrPort, canary string, n int) map[string]int {
	return many(t, n, func(int) (string, error) {
		tr := &http2.Transport{AllowHTTP: true,
			DialTLSContext: func(ctx context.Context, _, addr string, _ *tls.Config) (net.Conn, error) { return e.dial(ctx, addr) }}
		defer tr.CloseIdleConnections()
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		// An empty HealthCheckRequest: no compression, length 0.
		req, err := http.NewRequestWithContext(ctx, "POST", "http://"+vip.String()+"/grpc.health.v1.Health/Check", bytes.NewReader(make([]byte, 5)))
		if err != nil {
			return "", err
		}
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("TE", "trailers")
		if canary != "" {
			req.Header.Set("x-canary", canary)
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)); err != nil {
			return "", err
		}
		if st := resp.Trailer.Get("Grpc-Status") + resp.Header.Get("Grpc-Status"); resp.StatusCode != http.StatusOK || st != "0" {
			return "", fmt.Errorf("HTTP %d, grpc-status %q", resp.StatusCode, st)
		}
		return resp.Header.Get("X-Backend"), nil
	})
}
