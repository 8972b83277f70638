package netlab

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestOffloads(t *testing.T) {
	l := NewT(t, Config{Stable: 1, Canary: -1, VethXDPReady: true})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, c := range []struct {
		h      *Host
		ifname string
	}{{l.Client, HostIf}, {l.Switch, SwitchGatewayPort}} {
		out, err := c.h.Ethtool(ctx, "-k", c.ifname)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "generic-receive-offload: on") {
			t.Errorf("%s/%s: GRO not on:\n%s", c.h.Name, c.ifname, out)
		}
	}
	if err := l.SetTxChecksum(ctx, false); err != nil {
		t.Fatal(err)
	}
	for _, h := range append([]*Host{l.Client}, l.Backends()...) {
		out, err := h.Ethtool(ctx, "-k", HostIf)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "tx-checksumming: off") {
			t.Errorf("%s: TX checksum offload still on:\n%s", h.Name, out)
		}
	}
	// Traffic still flows with full checksums.
	if _, err := l.Stable[0].StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(l.Stable[0].Addr4, HelloPort), nil, 100, 4)
	if err != nil || res.OK != 100 {
		t.Errorf("after SetTxChecksum: %v, %v", res, err)
	}
}
