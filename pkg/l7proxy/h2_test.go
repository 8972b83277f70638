package l7proxy

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/graylane/graylane/pkg/service"
)

// h2cClient speaks HTTP/2 with prior knowledge only (no upgrade), over
// one connection.
func h2cClient() (*http.Client, *http.Transport) {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: tr}, tr
}

// TestH2CPriorKnowledge: an h2c connection is decided by its first
// HEADERS frame; its later streams follow it.
func TestH2CPriorKnowledge(t *testing.T) {
	checkLeaks(t)
	e := newEnv(t, envConfig{rules: []service.MatchRule{headerRule("X-Canary", "v2")}})
	for _, first := range []string{"canary", "stable"} {
		client, tr := h2cClient()
		h := map[string]string{}
		if first == "canary" {
			h["X-Canary"] = "v2"
		}
		if got := get(t, client, "http://"+e.addr+"/", h); got != first {
			t.Fatalf("first stream answered by %s, want %s", got, first)
		}
		for i := range 10 {
			h := map[string]string{"X-Canary": "v2"}
			if first == "canary" {
				h = nil
			}
			if got := get(t, client, "http://"+e.addr+"/", h); got != first {
				t.Fatalf("stream %d answered by %s, want %s like the first", i+2, got, first)
			}
		}
		resp, err := client.Get("http://" + e.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" || resp.Header.Get("X-Proto") != "HTTP/2.0" {
			t.Errorf("client spoke %s, backend saw %s; want HTTP/2.0 both", resp.Proto, resp.Header.Get("X-Proto"))
		}
		tr.CloseIdleConnections()
	}
	if c, s := e.obs.Pool(service.Canary), e.obs.Pool(service.Stable); c.Decided != 1 || s.Decided != 1 {
		t.Errorf("decisions: canary %d, stable %d; want one connection each", c.Decided, s.Decided)
	}
}

// TestGRPCMetadata: a gRPC-style request (HTTP/2, content-type
// application/grpc, a length-prefixed message, grpc-status trailer) with
// metadata x-tenant: beta goes to the canary; the same header on a
// request that is not gRPC does not count as metadata. The first
// response is measured with its HTTP/2 :status, and the call's
// grpc-status is read from its trailers.
func TestGRPCMetadata(t *testing.T) {
	checkLeaks(t)
	rule := service.MatchRule{GRPCMetadata: &service.FieldMatch{Name: "x-tenant", Value: "beta"}, Pool: service.Canary}
	e := newEnv(t, envConfig{rules: []service.MatchRule{rule}})
	for _, grpc := range []bool{true, false} {
		client, tr := h2cClient()
		want, name := "stable", grpcCall(t, client, e.addr, grpc)
		if grpc {
			want = "canary"
		}
		if name != want {
			t.Errorf("grpc %t: answered by %s, want %s", grpc, name, want)
		}
		tr.CloseIdleConnections()
	}
	c := e.obs.Pool(service.Canary)
	if c.Decided != 1 || c.Rules[0] != 1 || c.Responses != 1 || c.Statuses[200] != 1 || c.GRPCStatuses[0] != 1 {
		t.Errorf("canary counts %+v, want one decided by rule 0, one response with :status 200 and grpc-status 0", c)
	}
}

// grpcCall makes one unary call (or, with grpc false, the same POST as
// application/octet-stream) and returns the answering backend's name.
func grpcCall(t *testing.T, client *http.Client, addr string, grpc bool) string {
	t.Helper()
	msg := []byte{0, 0, 0, 0, 4, 'p', 'i', 'n', 'g'}
	req, err := http.NewRequest("POST", "http://"+addr+"/echo.Echo/Ping", bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	if grpc {
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
	}
	req.Header.Set("X-Tenant", "beta")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if !grpc {
		return string(body)
	}
	if len(body) < 5 || int(body[4]) != len(body)-5 || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Fatalf("gRPC response %q, trailers %v", body, resp.Trailer)
	}
	return string(body[5:])
}
