package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

// rpcAs makes an RPC to the cluster port at addr with the lab certificate
// of name, as a node (or an intruder holding that key) would: the
// answer's status and body, or the error that stopped it (a refused TLS
// peer sees its connection closed).
func rpcAs(t *testing.T, certs, name, addr, path string, req any) (int, string, error) {
	t.Helper()
	_, cli, err := pki.Load(pki.LabFiles(certs, name))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, a string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, cli)
			if err := tc.HandshakeContext(ctx); err != nil {
				c.Close()
				return nil, err
			}
			if _, err := tc.Write([]byte{streamRPC}); err != nil {
				c.Close()
				return nil, err
			}
			return tc, nil
		},
	}}
	defer hc.CloseIdleConnections()
	body, _ := json.Marshal(req)
	resp, err := hc.Post("http://"+addr+path, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(data)), nil
}

// TestForgedApply: commands a member's certificate forwards to the leader
// that are no valid command are refused before they take a log entry.
func TestForgedApply(t *testing.T) {
	c := newTestCluster(t, 3)
	waitFor(t, "a leader", func() bool { return c.leader() >= 0 })
	l := c.leader()
	member := (l + 1) % 3
	ctx := context.Background()
	if _, err := c.nodes[member].Apply(ctx, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 5)}}); err != nil {
		t.Fatal(err)
	}
	// Nothing else in flight (the write's own barrier) before counting.
	if err := c.nodes[l].raft.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	last := c.nodes[l].raft.LastIndex()
	bad, _ := Encode(&ApplyServices{Services: []service.Service{{Name: "x"}}})
	for _, tc := range []struct {
		name   string
		data   []byte
		status int
		want   string
	}{
		{"garbage", []byte("\x00\xffgarbage"), 400, "not a command"},
		{"unknown type", []byte{77, '{', '}'}, 400, "unknown command type 77"},
		{"unknown ignorable type", []byte{byte(IgnoreIfUnknown | 77), '{', '}'}, 400, "does not know it"},
		{"known type, bad JSON", []byte{byte(CmdSetWeight), '{'}, 400, "not a command"},
		{"known type, invalid content", bad, 200, `"kind":"conflict"`},
	} {
		status, msg, err := rpcAs(t, c.certs, c.nodes[member].cfg.Node, c.addrs[l], "/cluster/apply", applyRequest{Data: tc.data})
		if err != nil || status != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q (%v), want %d with %q", tc.name, status, msg, err, tc.status, tc.want)
		}
	}
	if got := c.nodes[l].raft.LastIndex(); got != last {
		t.Errorf("the refused commands took log entries: last index %d, was %d", got, last)
	}
}

// TestInjectedEntry: an entry written into the log around the leader's
// check is skipped by every node, none panics, and the cluster goes on.
func TestInjectedEntry(t *testing.T) {
	c := newTestCluster(t, 3)
	waitFor(t, "a leader", func() bool { return c.leader() >= 0 })
	l := c.leader()
	ctx := context.Background()
	if _, err := c.nodes[l].Apply(ctx, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 5)}}); err != nil {
		t.Fatal(err)
	}
	for _, data := range [][]byte{[]byte("\x00garbage"), {77, '{', '}'}, {byte(CmdSetWeight), '{'}} {
		if err := c.nodes[l].raft.Apply(data, 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.nodes[(l+1)%3].Apply(ctx, &SetWeight{Name: "web", Weight: 77}); err != nil {
		t.Fatalf("a write after the injected entries: %v", err)
	}
	for i := range c.nodes {
		waitFor(t, "every node to skip the 3 entries and take the next write", func() bool {
			return c.nodes[i].FSM().Skipped() == 3 && c.weightOn(i, "web") == 77
		})
	}
}

// TestJoinIdentity: a node joins under its certificate's name only, and
// may not take a member's name at another address or a member's address.
func TestJoinIdentity(t *testing.T) {
	c := newTestCluster(t, 2)
	if err := pki.WriteLab(c.certs, map[string][]string{"intruder": {"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a leader", func() bool { return c.leader() >= 0 })
	l := c.leader()
	free := freeAddr(t)
	for _, tc := range []struct {
		name, cert string
		req        joinRequest
		status     int
		want       string
	}{
		{"another's name", "intruder", joinRequest{Node: "n1", Address: free}, 403, `the certificate of "intruder" may not join the cluster as "n1"`},
		{"a member re-addressed", "n1", joinRequest{Node: "n1", Address: free}, 409, "remove it first"},
		{"a member's address", "intruder", joinRequest{Node: "intruder", Address: c.addrs[1]}, 409, `is member "n1"'s`},
	} {
		status, msg, err := rpcAs(t, c.certs, tc.cert, c.addrs[l], "/cluster/join", tc.req)
		if err != nil || status != tc.status || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %q (%v), want %d with %q", tc.name, status, msg, err, tc.status, tc.want)
		}
	}
	if status, msg, err := rpcAs(t, c.certs, "intruder", c.addrs[l], "/cluster/report", reportRequest{Node: "n1", Data: json.RawMessage(`{}`)}); err != nil || status != 403 {
		t.Errorf("a report as another node: %d %q (%v), want a 403", status, msg, err)
	}
}

// TestRemovedNodeRevoked: removing a member revokes its certificate on
// every node: it can neither rejoin nor write, not even on a connection
// it opened before; a new certificate for the same name may join again.
func TestRemovedNodeRevoked(t *testing.T) {
	c := newTestCluster(t, 3)
	waitFor(t, "a leader", func() bool { return c.leader() >= 0 })
	l := c.leader()
	gone := (l + 1) % 3
	name := c.nodes[gone].cfg.Node
	ctx := context.Background()
	if _, err := c.nodes[l].Apply(ctx, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 5)}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every node to know every member", func() bool { return c.nodes[(l+2)%3].isMember(name) })
	if err := c.nodes[(l+2)%3].RemoveMember(ctx, name); err != nil {
		t.Fatalf("remove %s: %v", name, err)
	}
	_, cli, err := pki.Load(pki.LabFiles(c.certs, name))
	if err != nil {
		t.Fatal(err)
	}
	fp := Fingerprint(cli.Certificates[0].Certificate[0])
	for i, n := range c.nodes {
		if i == gone {
			continue
		}
		waitFor(t, "the revocation on every member", func() bool { _, ok := n.FSM().Revoked(fp); return ok })
	}
	// Its own node, still running, holds connections opened before.
	if _, err := c.nodes[gone].Apply(ctx, &SetWeight{Name: "web", Weight: 9}); err == nil {
		t.Error("the removed node's write was taken")
	}
	for i := range c.nodes {
		if i == gone {
			continue
		}
		status, msg, err := rpcAs(t, c.certs, name, c.addrs[i], "/cluster/join", joinRequest{Node: name, Address: c.addrs[gone]})
		if err == nil && status != 403 {
			t.Errorf("rejoin at n%d with the revoked certificate: %d %q, want refused", i, status, msg)
		}
	}
	if w := c.weightOn(l, "web"); w != 5 {
		t.Errorf("weight %v after the removed node's write, want 5", w)
	}
	// A re-installed host: a new certificate under the same name joins.
	for _, f := range []string{pki.LabFiles(c.certs, name).Cert, pki.LabFiles(c.certs, name).Key} {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := pki.WriteLab(c.certs, map[string][]string{name: {"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	c.nodes[gone].Close()
	if err := os.RemoveAll(c.nodes[gone].cfg.DataDir); err != nil {
		t.Fatal(err)
	}
	c.start(gone)
	if !c.nodes[l].isMember(name) {
		t.Errorf("%s with a new certificate is not a member again", name)
	}
}
