package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/service"
)

// Attach end-to-end tests: the agent steers through every attach mode,
// and falls back when a kernel feature is missing.

// TestAttachModes: the same traffic through every attach mode: native XDP
// (veth with GRO on the peers, so redirected frames are accepted), generic
// XDP, tc, and auto (tc on veth).
func TestAttachModes(t *testing.T) {
	for _, mode := range []string{"native", "generic", "tc"} {
		t.Run(mode, func(t *testing.T) {
			e := setup(t, netlab.Config{VethXDPReady: mode == "native"}, mode)
			if mode == "native" {
				// Native XDP sees frames, not skbs: a veth sender's partial
				// checksum (offloaded, never computed) would reach the
				// backend as is. Real NICs deliver complete checksums; so
				// do the lab's hosts with checksum offload off.
				if err := e.lab.SetTxChecksum(e.ctx, false); err != nil {
					t.Fatal(err)
				}
			}
			w4 := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 5000)
			w6 := web("web6", e.lab, netlab.VIP6, 80, netlab.HelloPort, service.TCP, 5000)
			dns := web("dns", e.lab, netlab.VIP4, 53, netlab.UDPPort, service.UDP, 5000)
			if err := e.agent.Apply(e.ctx, []service.Service{w4, w6, dns}); err != nil {
				t.Fatal(err)
			}
			for _, vip := range []netip.Addr{netlab.VIP4, netlab.VIP6} {
				if _, err := e.lab.Client.Hello(e.ctx, netip.AddrPortFrom(vip, 80), netip.Addr{}); err != nil {
					t.Fatalf("%s via %s: first connection: %v", vip, mode, err)
				}
				res, err := e.lab.Client.HelloMany(e.ctx, netip.AddrPortFrom(vip, 80), nil, 2000, 32)
				if err != nil || res.Failed != 0 || len(res.Counts) != 3 {
					t.Fatalf("%s via %s: %v %v %v", vip, mode, err, res, res.Errors)
				}
				t.Logf("%s via %s: %s", vip, mode, res)
			}
			for i := range 50 {
				payload := []byte(fmt.Sprintf("q%d", i))
				if _, rest, err := e.lab.Client.HelloUDP(e.ctx, netip.AddrPortFrom(netlab.VIP4, 53), netip.Addr{}, payload); err != nil || !bytes.Equal(rest, payload) {
					t.Fatalf("UDP via %s: %v", mode, err)
				}
			}
			v, err := e.agent.View()
			if err != nil {
				t.Fatal(err)
			}
			defer v.Close()
			st, err := v.Stats()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s path counters: %v", mode, st)
			if st["fwd_redirect"] == 0 || st["reply_hit"] == 0 {
				t.Errorf("%s: the programs did not forward by themselves: %v", mode, st)
			}
		})
	}
}

// webLab is a lab with servers on every backend and the service web
// (VIP4:80 to the hello servers, 50 %), for a test that starts its own
// agent with the binary bin.
func webLab(t *testing.T) (ctx context.Context, lab *netlab.Lab, bin string, s service.Service) {
	t.Helper()
	testenv.RequirePrivileges(t)
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	lab = netlab.NewT(t, netlab.Config{})
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return ctx, lab, bin, web("web", lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 5000)
}

// TestFeatureFallback: with TCX forced off (the test hook), the agent
// says it falls back, attaches through a clsact qdisc, and steers.
func TestFeatureFallback(t *testing.T) {
	ctx, lab, bin, s := webLab(t)
	a, err := labagent.Start(ctx, lab, labagent.Options{Binary: bin, Mode: "tc", Services: []service.Service{s},
		Env: []string{"GRAYLANE_DISABLE_FEATURES=tcx,skb_csum_state"}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Remove()
	defer a.Stop()
	var fallback, csumFallback, helpers, clsact int
	for _, l := range a.Log() {
		if strings.Contains(l, `"msg":"kernel feature missing: using the fallback"`) && strings.Contains(l, `"feature":"TCX"`) {
			fallback++
		}
		if strings.Contains(l, `"msg":"kernel feature missing: using the fallback"`) && strings.Contains(l, `"feature":"kfunc bpf_cast_to_kern_ctx"`) {
			csumFallback++
		}
		if strings.Contains(l, `"msg":"tc programs leave L4 checksums to the kernel's helpers"`) {
			helpers++
		}
		if strings.Contains(l, `"msg":"steering on interface"`) && strings.Contains(l, `"hook":"tc-clsact"`) {
			clsact++
		}
	}
	if fallback != 1 || csumFallback != 1 || helpers != 1 || clsact != 2 {
		t.Errorf("log: %d TCX fallback notices (want 1), %d checksum-state ones (want 1), %d notices of the helpers (want 1), %d clsact attachments (want 2):\n%s",
			fallback, csumFallback, helpers, clsact, strings.Join(a.Log(), "\n"))
	}
	if _, err := lab.Client.Hello(ctx, netip.AddrPortFrom(netlab.VIP4, 80), netip.Addr{}); err != nil {
		t.Fatalf("through the agent on clsact: %v", err)
	}
}
