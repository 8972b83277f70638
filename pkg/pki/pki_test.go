package pki

import (
	"crypto/tls"
	"io"
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
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.Write([]byte("ok")); c.Close() }()
		}
	}()
	try := func(cfg *tls.Config) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = io.ReadAll(c)
		return err
	}
	if err := try(good); err != nil {
		t.Fatalf("a node of the same CA: %v", err)
	}
	if err := try(bad); err == nil {
		t.Fatal("a node of another CA was accepted")
	}
}
