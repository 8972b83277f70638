package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/testenv"
	"github.com/vishvananda/netlink"
)

// labNamespaces lists /run/netns entries of lab (or of every lab with the
// prefix if lab is a bare prefix).
func labNamespaces(t *testing.T, lab string) []string {
	t.Helper()
	return namespaces(t, func(name string) bool { return strings.HasPrefix(name, lab+"-") })
}

// prefixNamespaces lists /run/netns entries of every lab with the prefix.
func prefixNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	return namespaces(t, stalePattern(prefix).MatchString)
}

// namespaces lists the /run/netns entries whose names match.
func namespaces(t *testing.T, match func(name string) bool) []string {
	t.Helper()
	entries, err := os.ReadDir(NetnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if match(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out
}

// rootLeaks reports any lab interface or address in the root namespace
// (where this test's unlocked goroutines run).
func rootLeaks(t *testing.T, lab string) []string {
	t.Helper()
	var out []string
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range links {
		if strings.Contains(link.Attrs().Name, lab) || slices.Contains([]string{GatewayClientIf, GatewayBackendIf, SwitchGatewayPort}, link.Attrs().Name) {
			out = append(out, "link "+link.Attrs().Name)
		}
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		ip, _ := netip.AddrFromSlice(a.IP)
		ip = ip.Unmap()
		if LabNet4.Contains(ip) || LabNet6.Contains(ip) {
			out = append(out, "address "+ip.String())
		}
	}
	return out
}

func TestNewClose(t *testing.T) {
	l := NewT(t, Config{})
	if len(l.Stable) != 2 || len(l.Canary) != 1 {
		t.Fatalf("got %d stable, %d canary; want 2, 1", len(l.Stable), len(l.Canary))
	}
	want := []string{l.Name + "-c0", l.Name + "-cl", l.Name + "-gw", l.Name + "-s0", l.Name + "-s1", l.Name + "-sw"}
	if got := labNamespaces(t, l.Name); !slices.Equal(got, want) {
		t.Fatalf("namespaces = %v, want %v", got, want)
	}
	if leaks := rootLeaks(t, l.Name); len(leaks) > 0 {
		t.Errorf("root namespace has lab state: %v", leaks)
	}
	for _, c := range []struct {
		h          *Host
		key, value string
	}{
		{l.Gateway, "net.ipv4.ip_forward", "1"},
		{l.Gateway, "net.ipv6.conf.all.forwarding", "1"},
		{l.Gateway, "net.ipv6.conf.cli0.forwarding", "1"},
		{l.Gateway, "net.ipv4.conf.bck0.rp_filter", "0"},
		{l.Gateway, "net.ipv4.conf.all.rp_filter", "0"},
		{l.Client, "net.ipv4.ip_local_port_range", "1024\t65000"},
		{l.Client, "net.ipv4.tcp_tw_reuse", "1"},
		{l.Client, "net.ipv6.conf.eth0.accept_dad", "0"},
		{l.Stable[0], "net.ipv4.ip_forward", "0"},
	} {
		got, err := c.h.ReadSysctl(c.key)
		if err != nil || got != c.value {
			t.Errorf("%s: %s = %q, %v; want %q", c.h.Name, c.key, got, err, c.value)
		}
	}
	inodes := labInodes(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if got := labNamespaces(t, l.Name); len(got) > 0 {
		t.Fatalf("namespaces left after Close: %v", got)
	}
	assertNoNSRefs(t, inodes)
	if err := l.Client.SetLinkUp(context.Background(), HostIf, true); !errors.Is(err, ErrClosed) {
		t.Errorf("SetLinkUp after Close: %v, want ErrClosed", err)
	}
	if err := l.Client.Do(func() error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: %v, want ErrClosed", err)
	}
}

func TestNewFailsCleanly(t *testing.T) {
	testenv.RequirePrivileges(t)
	const prefix = "glfail"
	for _, cfg := range []Config{
		{Prefix: prefix, ClientAliases: MaxClientAliases + 1},
		{Prefix: prefix, Stable: MaxStable + 1},
		{Prefix: prefix, Canary: MaxCanary + 1},
		{Prefix: "Bad-Prefix"},
	} {
		if l, err := New(context.Background(), cfg); err == nil {
			l.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	// Fail at every checkpoint of the build in turn, until New gets
	// through: nothing may be left behind.
	t.Cleanup(func() { testFailStep = nil })
	errInjected := errors.New("injected failure")
	for n := 1; ; n++ {
		testFailStep = func(step int) error {
			if step == n {
				return errInjected
			}
			return nil
		}
		if n == 30 {
			// Make sure the check below can see namespaces at all.
			testFailStep = func(step int) error {
				if step == n {
					if got := prefixNamespaces(t, prefix); len(got) == 0 {
						t.Error("prefixNamespaces sees no namespace during New")
					}
					return errInjected
				}
				return nil
			}
		}
		l, err := New(context.Background(), Config{Prefix: prefix, Stable: 1, Canary: 1, ClientAliases: 2, VethXDPReady: true})
		if got := prefixNamespaces(t, prefix); err != nil && len(got) > 0 {
			t.Fatalf("step %d: namespaces left after failed New (%v): %v", n, err, got)
		}
		if err == nil {
			l.Close()
			t.Logf("New succeeds past %d checkpoints", n-1)
			if n < 20 {
				t.Errorf("only %d checkpoints", n-1)
			}
			break
		}
		if !errors.Is(err, errInjected) || l != nil {
			t.Fatalf("step %d: New = %v, %v", n, l, err)
		}
	}
	testFailStep = nil
	// A cancelled ctx stops the build too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(ctx, Config{Prefix: prefix}); !errors.Is(err, context.Canceled) {
		t.Errorf("New with a cancelled ctx: %v", err)
	}
	if got := prefixNamespaces(t, prefix); len(got) > 0 {
		t.Fatalf("namespaces left after cancelled New: %v", got)
	}
}

func TestParallelLabs(t *testing.T) {
	testenv.RequirePrivileges(t)
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			l := NewT(t, Config{Stable: 1, Canary: 1})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for _, b := range l.Backends() {
				if _, err := b.StartServers(ctx); err != nil {
					t.Fatal(err)
				}
				// Same addresses in every lab, no interference.
				res, err := l.Client.HelloMany(ctx, netip.AddrPortFrom(b.Addr6, HelloPort), nil, 200, 8)
				if err != nil || res.Counts[b.Name] != 200 {
					t.Errorf("%s: %v, %v", b.Name, res, err)
				}
			}
		})
	}
}
