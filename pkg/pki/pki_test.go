package pki

import (
	"crypto/tls"
	"io"
	"strings"
	"testing"
)

// TestMutualTLS: two nodes of one CA talk; a node of another CA is refused
// both as a server and as a client.
func TestMutualTLS(t *testing.T) {
	dir, other := t.TempDir(), t.TempDir()
	if err := WriteLab(dir, map[string][]string{"a": {"127.0.0.1"}, "b": {"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := WriteLab(other, map[string][]string{"x": {"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	srv, _, err := Load(LabFiles(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	_, good, _ := Load(LabFiles(dir, "b"))
	_, bad, _ := Load(LabFiles(other, "x"))
	addr := serveTLS(t, srv)
	try := func(cfg *tls.Config) error { return dialTLS(addr, cfg) }
	if err := try(good); err != nil {
		t.Fatalf("a node of the same CA: %v", err)
	}
	if err := try(bad); err == nil {
		t.Fatal("a node of another CA was accepted")
	}
}

// TestWriteLabReusesCA: nodes added later are signed by the same CA; an
// existing node certificate is not overwritten; bad names are refused.
func TestWriteLabReusesCA(t *testing.T) {
	dir := t.TempDir()
	if err := WriteLab(dir, map[string][]string{"a": {"127.0.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if err := WriteLab(dir, map[string][]string{"b": {"127.0.0.1", "b.example"}}); err != nil {
		t.Fatal(err)
	}
	srv, _, err := Load(LabFiles(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	_, cli, err := Load(LabFiles(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if err := dialTLS(serveTLS(t, srv), cli); err != nil {
		t.Fatalf("a node added later does not share the CA: %v", err)
	}

	for _, tc := range []struct {
		hosts map[string][]string
		want  string
	}{
		{map[string][]string{"a": nil}, "a.pem exists"},
		{map[string][]string{"ca": nil}, `node name "ca"`},
		{map[string][]string{"a b": nil}, `node name "a b"`},
	} {
		err := WriteLab(dir, tc.hosts)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("WriteLab(%v) = %v, want an error containing %q", tc.hosts, err, tc.want)
		}
	}
}

// serveTLS serves "ok" to every TLS client on a loopback port until the
// test ends, and returns its address.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.Write([]byte("ok")); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// dialTLS connects with cfg and reads the answer: the handshake's verdict.
func dialTLS(addr string, cfg *tls.Config) error {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = io.ReadAll(c)
	return err
}
