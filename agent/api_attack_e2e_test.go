package agent_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/agent/apiserver"
	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

// TestAPIUnderAttack: while one peer holds 1 000 idle connections to the
// HTTPS API and another sends bytes a second at a time (slowloris), an
// admin on a third host changes a weight with --wait through the same
// API, and it reaches the kernel. The idle peer keeps at most its
// share of connections; the slow one is cut off.
func TestAPIUnderAttack(t *testing.T) {
	testenv.RequirePrivileges(t)
	const admin = "admin-0123456789abcdef0123456789"
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := netlab.NewT(t, netlab.Config{PeerGateways: 1})
	certs := t.TempDir()
	gwAddr := netip.MustParseAddrPort(labagent.ClusterAddr(lab.Gateway)).Addr()
	if err := pki.WriteLab(certs, map[string][]string{lab.Gateway.Name: {gwAddr.String()}}); err != nil {
		t.Fatal(err)
	}
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	s := web("web", lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 500)
	a, err := labagent.Start(ctx, lab, labagent.Options{Binary: bin, Services: []service.Service{s},
		Cluster: &labagent.Cluster{Certs: certs}, Tokens: map[string]string{admin: "*"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { a.Stop(); a.Remove() }()
	api := netip.AddrPortFrom(gwAddr, labagent.APIPort).String()

	idle := openIdle(t, lab.Client, api, 1000)
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	slow := startSlowloris(t, lab.Backends()[0], api, 10)

	ctlBin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	cmd := lab.Peers[0].Command(ctx, ctlBin, "--server", "https://"+api, "--ca", pki.LabFiles(certs, lab.Gateway.Name).CA,
		"set-weight", "web", "20%", "--wait")
	cmd.Env = append(os.Environ(), "GRAYLANE_TOKEN="+admin)
	out, code := exitCode(t, cmd)
	if code != 0 || !strings.Contains(out, "applied on: gw") {
		t.Errorf("the admin's set-weight --wait under attack: exit %d\n%s", code, out)
	}
	s.CanaryWeight = 2000
	if diff := kernelDiffOf(t, a, s); diff != "" {
		t.Errorf("the kernel after the admin's write: %s", diff)
	}
	if kept := stillOpen(idle); kept > apiserver.DefaultConnPerPeer {
		t.Errorf("the idle peer holds %d connections, more than its %d", kept, apiserver.DefaultConnPerPeer)
	} else {
		t.Logf("the idle peer holds %d of its 1000 connections", kept)
	}
	if err := <-slow; err != nil {
		t.Error(err)
	}
}

// openIdle opens n TCP connections from h to addr and sends nothing.
func openIdle(t *testing.T, h *netlab.Host, addr string, n int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	err := h.Do(func() error {
		for range n {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("open idle connections: %v (after %d)", err, len(conns))
	}
	return conns
}

// stillOpen counts the connections the server has not closed.
func stillOpen(conns []net.Conn) int {
	n := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			n++
		}
	}
	return n
}

// startSlowloris opens n connections from h to addr, each sending one
// byte a second (a TLS record that never completes); the result is nil
// once the server cut every one of them off within a minute.
func startSlowloris(t *testing.T, h *netlab.Host, addr string, n int) <-chan error {
	t.Helper()
	var conns []net.Conn
	if err := h.Do(func() error {
		for range n {
			c, err := net.DialTimeout("tcp", addr, 2*time.Second)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		return nil
	}); err != nil {
		t.Fatalf("slowloris: %v", err)
	}
	done := make(chan error, 1)
	go func() {
		deadline := time.Now().Add(time.Minute)
		cut := 0
		for i, c := range conns {
			for {
				if _, err := c.Write([]byte{0x16}); err != nil {
					cut++
					break
				}
				if time.Now().After(deadline) {
					done <- fmt.Errorf("slowloris connection %d still open after a minute", i)
					return
				}
				time.Sleep(time.Second)
			}
			c.Close()
		}
		done <- nil
	}()
	return done
}

// kernelDiffOf says how the kernel of a's host differs from s's weight
// ("" when it holds it).
func kernelDiffOf(t *testing.T, a *labagent.Agent, s service.Service) string {
	t.Helper()
	v, err := a.View()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	ks, ok, err := v.Service(s.Frontend())
	switch {
	case err != nil:
		return err.Error()
	case !ok:
		return "the service is not installed"
	case ks.Weight != s.CanaryWeight:
		return fmt.Sprintf("weight %v, want %v", ks.Weight, s.CanaryWeight)
	}
	return ""
}
