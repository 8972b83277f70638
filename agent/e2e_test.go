package agent_test

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// End-to-end tests: a real graylane-agent process on the gateway of a netns
// lab, real TCP/UDP clients and servers, state read back from the kernel.

// agent and ctl are the graylane-agent and graylanectl binaries the tests
// run, built once.
var (
	agent labagent.Binary
	ctl   = labagent.Binary{Package: labagent.CtlPackage}
)

func TestMain(m *testing.M) {
	code := m.Run()
	agent.Remove()
	upgraded.Remove()
	ctl.Remove()
	os.Exit(code)
}

type env struct {
	lab   *netlab.Lab
	agent *labagent.Agent
	ctx   context.Context
}

// setup builds a lab with servers on every backend and starts an agent.
func setup(t *testing.T, cfg netlab.Config, mode string, svcs ...service.Service) *env {
	t.Helper()
	return setupWith(t, cfg, labagent.Options{Mode: mode, Services: svcs})
}

// setupWith is setup with the agent's options (Binary and Log are set
// here).
func setupWith(t testing.TB, cfg netlab.Config, opts labagent.Options) *env {
	t.Helper()
	testenv.RequirePrivileges(t)
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	lab, err := netlab.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Close() })
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var logBuf bytes.Buffer
	var logMu sync.Mutex
	opts.Binary, opts.Log = bin, lockedWriter{&logMu, &logBuf}
	a, err := labagent.Start(ctx, lab, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer a.Remove()
		// A test that stopped the agent itself checked that stop.
		if a.Exited() {
			return
		}
		if err := a.Stop(); err != nil {
			t.Errorf("stop agent: %v", err)
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("agent log:\n%s", logBuf.String())
			logMu.Unlock()
		}
	})
	return &env{lab: lab, agent: a, ctx: ctx}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// web is a TCP service on vip:port steered to every backend's port bport.
func web(name string, lab *netlab.Lab, vip netip.Addr, port, bport uint16, proto service.Protocol, weight service.Weight) service.Service {
	s := service.Service{Name: name, VIP: vip, Port: port, Protocol: proto, Key: service.KeyFlow, CanaryWeight: weight}
	for _, h := range lab.Stable {
		s.Stable = append(s.Stable, service.Backend{Addr: netip.AddrPortFrom(pick(h, vip), bport)})
	}
	for _, h := range lab.Canary {
		s.Canary = append(s.Canary, service.Backend{Addr: netip.AddrPortFrom(pick(h, vip), bport)})
	}
	return s
}

func pick(h *netlab.Host, like netip.Addr) netip.Addr {
	if like.Is4() {
		return h.Addr4
	}
	return h.Addr6
}

func isCanary(name string) bool { return strings.HasPrefix(name, "c") }

// kernelService reads s back from the agent's pinned maps; close the view.
func (e *env) kernelService(t *testing.T, s service.Service) (datapath.KernelService, *datapath.View) {
	t.Helper()
	v, err := e.agent.View()
	if err != nil {
		t.Fatal(err)
	}
	ks, ok, err := v.Service(s.Frontend())
	if err != nil || !ok {
		v.Close()
		t.Fatalf("service %s not in the kernel: %v", s.Name, err)
	}
	return ks, v
}

// waitKernelWeight checks the kernel's services map has s's weight.
func (e *env) waitKernelWeight(t *testing.T, s service.Service) {
	t.Helper()
	ks, v := e.kernelService(t, s)
	defer v.Close()
	if ks.Weight != s.CanaryWeight {
		t.Fatalf("kernel weight of %s is %s after the reload, want %s", s.Name, ks.Weight, s.CanaryWeight)
	}
}
