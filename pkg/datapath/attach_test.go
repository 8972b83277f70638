package datapath

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestAttachTCFallbacks attaches in the gateway of a lab with TCX and,
// as on kernels before 6.6, with a clsact qdisc and direct-action filter;
// real connections go through both, and Detach leaves no filter behind.
func TestAttachTCFallbacks(t *testing.T) {
	for _, c := range []struct {
		name   string
		noTCX  bool
		expect Hook
	}{{"tcx", false, HookTCX}, {"clsact", true, HookClsact}} {
		t.Run(c.name, func(t *testing.T) {
			lab := netlab.NewT(t, netlab.Config{})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, h := range lab.Backends() {
				if _, err := h.StartServers(ctx); err != nil {
					t.Fatal(err)
				}
			}
			dp, err := New(Options{FlowTable: 4096, MaxServices: 4, DisableTCX: c.noTCX})
			if err != nil {
				t.Fatal(err)
			}
			defer dp.Close()
			for ifname, at := range attachGateway(t, lab, dp, ModeTC) {
				if at.Hook != c.expect {
					t.Errorf("%s: attached as %s, want %s", ifname, at.Hook, c.expect)
				}
			}
			s := service.Service{Name: "web", VIP: netlab.VIP4, Port: 80, Protocol: service.TCP,
				Stable: []service.Backend{{Addr: netip.AddrPortFrom(lab.Stable[0].Addr4, netlab.HelloPort)}},
				Canary: []service.Backend{{Addr: netip.AddrPortFrom(lab.Canary[0].Addr4, netlab.HelloPort)}}, CanaryWeight: 5000}
			if err := dp.Apply([]service.Service{s}); err != nil {
				t.Fatal(err)
			}
			res, err := lab.Client.HelloMany(ctx, netip.AddrPortFrom(netlab.VIP4, 80), nil, 500, 16)
			if err != nil || res.Failed != 0 || len(res.Counts) != 2 {
				t.Fatalf("through %s: %v %v", c.name, err, res)
			}
			// Every connection closed with FINs both ways: the last ACK of
			// each deleted its flow (a few may still be closing).
			st, err := dp.Stats()
			if err != nil {
				t.Fatal(err)
			}
			n, err := dp.FlowEntries()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("after 500 connections: %d flows closed, %d in the table", st["flow_closed"], n)
			if st["flow_closed"] < 490 || n > 10 {
				t.Errorf("after 500 closed connections: %d flows closed, %d left in the table", st["flow_closed"], n)
			}
			err = lab.Gateway.Do(func() error {
				for _, ifname := range []string{netlab.GatewayClientIf, netlab.GatewayBackendIf} {
					if err := dp.Detach(ifname); err != nil {
						return err
					}
					l, err := netlink.LinkByName(ifname)
					if err != nil {
						return err
					}
					filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
					if err != nil {
						return err
					}
					if len(filters) != 0 {
						t.Errorf("%s: %d tc filters left after Detach", ifname, len(filters))
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

// attachGateway attaches dp in the lab's gateway, to its client and its
// backend interface, in mode, and returns the attachments by interface.
func attachGateway(t *testing.T, lab *netlab.Lab, dp *Datapath, mode Mode) map[string]Attachment {
	t.Helper()
	got := map[string]Attachment{}
	err := lab.Gateway.Do(func() error {
		for _, a := range []struct {
			ifname string
			role   Role
		}{{netlab.GatewayClientIf, RoleClient}, {netlab.GatewayBackendIf, RoleBackend}} {
			at, err := dp.Attach(a.ifname, a.role, mode)
			if err != nil {
				return err
			}
			got[a.ifname] = at
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}
