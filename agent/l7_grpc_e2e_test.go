package agent_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

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
// vip with a grpc-go client, one connection each, with metadata
// x-canary: canary (none when empty), and counts the backends that
// answered. A grpc-go client waits for the server's SETTINGS before its
// first HEADERS: the L7 proxy sends its own (package l7proxy, "HTTP/2
// without TLS").
func (e *env) grpcMany(t *testing.T, vip netip.AddrPort, canary string, n int) map[string]int {
	return many(t, n, func(int) (string, error) {
		cc, err := grpc.NewClient("passthrough:///"+vip.String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(e.dial))
		if err != nil {
			return "", err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		if canary != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-canary", canary)
		}
		var md metadata.MD
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&md))
		if err != nil {
			return "", err
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING || len(md.Get("x-backend")) != 1 {
			return "", fmt.Errorf("status %v, header metadata %v", resp.GetStatus(), md)
		}
		return md.Get("x-backend")[0], nil
	})
}

// grpcNotFound makes n health checks of a service the server does not
// know through vip, one connection each, with metadata x-canary: canary,
// and fails the test unless each is answered NotFound.
func (e *env) grpcNotFound(t *testing.T, vip netip.AddrPort, canary string, n int) {
	t.Helper()
	for i := range n {
		cc, err := grpc.NewClient("passthrough:///"+vip.String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(e.dial))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		ctx = metadata.AppendToOutgoingContext(ctx, "x-canary", canary)
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "missing"})
		cancel()
		cc.Close()
		if status.Code(err) != codes.NotFound {
			t.Fatalf("call %d: %v, want NotFound", i, err)
		}
	}
}
