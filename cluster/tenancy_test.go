package cluster

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
	"github.com/graylane/graylane/pkg/tenant"
)

// ownedBy returns svc(name, vip) owned by tenant t.
func ownedBy(t, name, vip string) service.Service {
	s := svc(name, vip, 0)
	s.Tenant = t
	return s
}

// TestTenancy: a tenant's writes commit only within its Tenant: its own
// services, inside its prefixes and quotas; an admin's are not bounded.
func TestTenancy(t *testing.T) {
	f := NewFSM(nil)
	index := uint64(0)
	step := func(c Command) error {
		index++
		return apply(t, f, index, c)
	}
	if err := step(&ApplyServices{Services: []service.Service{ownedBy("b", "theirs", "10.0.0.9")}}); err != nil {
		t.Fatalf("an admin's service of tenant b: %v", err)
	}
	mine := ownedBy("a", "web", "10.0.0.1")
	var forbidden *ForbiddenError
	if err := step(&ApplyTenants{Tenants: []tenant.Tenant{{Name: "b", MaxServices: 1}}}); err != nil {
		t.Fatal(err)
	}
	if err := step(&ApplyServices{Services: []service.Service{mine}, Meta: Meta{Caller: "a"}}); !errors.As(err, &forbidden) || !strings.Contains(err.Error(), "has no Tenant") {
		t.Fatalf("a tenant without a Tenant: %v", err)
	}
	ta := tenant.Tenant{Name: "a", VIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/29")},
		Backends:    []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("169.254.0.0/16")},
		MaxServices: 2, MaxReleases: 1, MaxPins: 2, MaxMirrorPercent: 500}
	if err := step(&ApplyTenants{Tenants: []tenant.Tenant{ta}, Meta: Meta{Caller: "a"}}); !errors.As(err, &forbidden) {
		t.Fatalf("a tenant applying its own Tenant: %v", err)
	}
	if err := step(&ApplyTenants{Tenants: []tenant.Tenant{ta}}); err != nil {
		t.Fatalf("an admin applying a Tenant: %v", err)
	}
	if err := step(&ApplyServices{Services: []service.Service{mine}, Meta: Meta{Caller: "a"}}); err != nil {
		t.Fatalf("a service within its grants: %v", err)
	}
	outside := ownedBy("a", "far", "10.0.0.100")
	metadata := ownedBy("a", "meta", "10.0.0.2")
	metadata.Canary[0].Addr = netip.MustParseAddrPort("169.254.169.254:80")
	mirrored := mine
	mirrored.Mirror = &service.Mirror{Percent: 1000, To: "mirror0"}
	toEth := mine
	toEth.Mirror = &service.Mirror{Percent: 100, To: "eth0"}
	stolen := ownedBy("a", "theirs", "10.0.0.3")
	var limit *LimitError
	for _, tc := range []struct {
		name string
		cmd  Command
		as   any
		want string
	}{
		{"a VIP outside its prefixes", &ApplyServices{Services: []service.Service{outside}, Meta: Meta{Caller: "a"}}, &limit, "outside tenant \"a\"'s VIP prefixes"},
		{"a link-local backend", &ApplyServices{Services: []service.Service{metadata}, Meta: Meta{Caller: "a"}}, &limit, "no tenant may send to"},
		{"a mirror share above its quota", &ApplyServices{Services: []service.Service{mirrored}, Meta: Meta{Caller: "a"}}, &limit, "maxMirrorPercent"},
		{"a mirror to an interface not granted", &ApplyServices{Services: []service.Service{toEth}, Meta: Meta{Caller: "a"}}, &limit, "not one of tenant \"a\"'s mirror interfaces"},
		{"another tenant's service replaced", &ApplyServices{Services: []service.Service{stolen}, Meta: Meta{Caller: "a"}}, &forbidden, `service "theirs" is not tenant "a"'s`},
		{"another tenant's weight", &SetWeight{Name: "theirs", Weight: 100, Meta: Meta{Caller: "a"}}, &forbidden, "is not tenant"},
		{"another tenant's service deleted", &DeleteService{Name: "theirs", Meta: Meta{Caller: "a"}}, &forbidden, "is not tenant"},
	} {
		before, _ := f.State()
		err := step(tc.cmd)
		if err == nil || !errors.As(err, tc.as) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a %T with %q", tc.name, err, tc.as, tc.want)
		}
		if after, _ := f.State(); !equalState(before, after) {
			t.Errorf("%s changed the state", tc.name)
		}
	}
	if err := step(&ApplyServices{Services: []service.Service{ownedBy("a", "two", "10.0.0.4")}, Meta: Meta{Caller: "a"}}); err != nil {
		t.Fatalf("a second service: %v", err)
	}
	if err := step(&ApplyServices{Services: []service.Service{ownedBy("a", "three", "10.0.0.5")}, Meta: Meta{Caller: "a"}}); !errors.As(err, &limit) || !strings.Contains(err.Error(), "maxServices 2") {
		t.Errorf("a third service past maxServices 2: %v", err)
	}
	for i, p := range []string{"10.9.0.0/16", "10.8.0.0/16", "10.7.0.0/16"} {
		err := step(&SetPin{Name: "web", Prefix: netip.MustParsePrefix(p), Pool: service.Canary, Meta: Meta{Caller: "a"}})
		if i < 2 && err != nil {
			t.Fatalf("pin %d: %v", i, err)
		}
		if i == 2 && (!errors.As(err, &limit) || !strings.Contains(err.Error(), "maxPins 2")) {
			t.Errorf("a pin past maxPins 2: %v", err)
		}
	}
	if err := step(&DeleteTenant{Name: "a"}); err == nil || !strings.Contains(err.Error(), "still owns services two, web") {
		t.Errorf("deleting a tenant that owns services: %v", err)
	}
	if err := step(&DeleteService{Name: "two", Meta: Meta{Caller: "a"}}); err != nil {
		t.Errorf("a tenant deleting its own service: %v", err)
	}
	st, _ := f.State()
	if _, ok := st.Tenants["a"]; !ok || len(st.Services["web"].Pins) != 2 {
		t.Errorf("state after the tenant's writes: %+v", st)
	}
}

// TestTenancyBeforeTenants: before any Tenant exists, tenants' writes are
// judged as before (a cluster being upgraded); the first Tenant turns the
// judgement on for every tenant.
func TestTenancyBeforeTenants(t *testing.T) {
	f := NewFSM(nil)
	legacy := ownedBy("a", "old", "10.0.0.7")
	if err := apply(t, f, 1, &ApplyServices{Services: []service.Service{legacy}, Meta: Meta{Caller: "a"}}); err != nil {
		t.Fatalf("a tenant's write before any Tenant exists: %v", err)
	}
	if err := apply(t, f, 2, &ApplyTenants{Tenants: []tenant.Tenant{{Name: "b", MaxServices: 1}}}); err != nil {
		t.Fatal(err)
	}
	var forbidden *ForbiddenError
	if err := apply(t, f, 3, &SetWeight{Name: "old", Weight: 100, Meta: Meta{Caller: "a"}}); !errors.As(err, &forbidden) {
		t.Errorf("a tenant's write once a Tenant exists, without its own: %v", err)
	}
	if err := apply(t, f, 4, &DeleteService{Name: "old", Meta: Meta{Caller: "a"}}); err != nil {
		t.Errorf("a tenant deleting its own service without a Tenant: %v", err)
	}
}

// TestTenantReleases: a tenant's release names commands of the agents'
// allowlist, never a command line, wherever it is written from.
func TestTenantReleases(t *testing.T) {
	f := NewFSM(nil)
	index := uint64(0)
	step := func(c Command) error {
		index++
		return apply(t, f, index, c)
	}
	ta := tenant.Tenant{Name: "a", VIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/29")},
		Backends: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/24"), netip.MustParsePrefix("10.2.0.0/24")}, MaxServices: 2, MaxReleases: 1}
	if err := step(&ApplyTenants{Tenants: []tenant.Tenant{ta}}); err != nil {
		t.Fatal(err)
	}
	if err := step(&ApplyServices{Services: []service.Service{ownedBy("a", "web", "10.0.0.1")}, Meta: Meta{Caller: "a"}}); err != nil {
		t.Fatal(err)
	}
	var forbidden *ForbiddenError
	// A tenant's release: named commands only, never a command line.
	rel := testRelease("web-v2", "web")
	argv := rel
	argv.Steps = append(slices.Clone(rel.Steps), release.Step{Verify: []release.Gate{{Exec: []string{"sh", "-c", "touch /tmp/pwned"}, Timeout: time.Second}}})
	if err := step(&Apply{Releases: []release.Release{argv}, Meta: Meta{Caller: "a"}}); !errors.As(err, &forbidden) || !strings.Contains(err.Error(), "may not run a command line") {
		t.Errorf("a tenant's release with a command line: %v", err)
	}
	fromFile := rel
	fromFile.Steps = append(slices.Clone(rel.Steps), release.Step{Verify: []release.Gate{{Shadow: &release.ShadowGate{From: "b-traffic.pcapng", MaxDiffering: 100, Duration: time.Second}, Timeout: time.Minute}}})
	if err := step(&Apply{Releases: []release.Release{fromFile}, Meta: Meta{Caller: "a"}}); !errors.As(err, &forbidden) || !strings.Contains(err.Error(), "not a file") {
		t.Errorf("a tenant's shadow gate reading a file: %v", err)
	}
	if err := step(&Apply{Releases: []release.Release{rel}, Meta: Meta{Caller: "a"}}); err != nil {
		t.Errorf("a tenant's release within its grants: %v", err)
	}
	if err := step(&DeleteRelease{Name: "web-v2", Meta: Meta{Caller: "a"}}); err != nil {
		t.Errorf("a tenant deleting its release: %v", err)
	}
}

// TestHijackRefused: a VIP:port that is another tenant's backend endpoint
// is refused whoever writes it, without naming the other service.
func TestHijackRefused(t *testing.T) {
	f := NewFSM(nil)
	victim := ownedBy("b", "db", "10.0.0.9")
	if err := apply(t, f, 1, &ApplyServices{Services: []service.Service{victim}}); err != nil {
		t.Fatal(err)
	}
	thief := ownedBy("a", "thief", "10.0.0.1")
	ep := victim.Canary[0].Addr
	thief.VIP, thief.Port = ep.Addr(), ep.Port()
	err := apply(t, f, 2, &ApplyServices{Services: []service.Service{thief}})
	if err == nil || !strings.Contains(err.Error(), "backend endpoint of another tenant's service") || strings.Contains(err.Error(), `"db"`) {
		t.Errorf("a VIP on another tenant's backend endpoint: %v", err)
	}
	// The same tenant may chain its own services.
	thief.Tenant = "b"
	if err := apply(t, f, 3, &ApplyServices{Services: []service.Service{thief}}); err != nil {
		t.Errorf("a tenant chaining its own services: %v", err)
	}
}

// TestMemberAddresses: no service may take a cluster member's address as
// its VIP or send to one, whoever writes it, unless its Tenant allows
// reserved addresses; the refusal takes no log entry.
func TestMemberAddresses(t *testing.T) {
	c := newTestCluster(t, 2)
	waitFor(t, "a leader", func() bool { return c.leader() >= 0 })
	// Restarted with an API address besides the cluster one.
	c.own = []netip.Addr{netip.MustParseAddr("192.0.2.7")}
	for i := range c.nodes {
		c.nodes[i].Close()
		c.start(i)
	}
	waitFor(t, "a leader again", func() bool { return c.leader() >= 0 })
	l := c.nodes[c.leader()]
	ctx := t.Context()
	onMember := ownedBy("ops", "api", "10.0.0.1")
	onMember.VIP = netip.MustParseAddr("127.0.0.1") // the members' cluster address
	toMember := ownedBy("ops", "back", "10.0.0.2")
	toMember.Canary[0].Addr = netip.MustParseAddrPort("192.0.2.7:7443") // a member's API
	for _, s := range []service.Service{onMember, toMember} {
		// Nothing else in flight (the new leader's own entries): a
		// barrier returns once all before it are applied.
		if err := l.raft.Barrier(5 * time.Second).Error(); err != nil {
			t.Fatal(err)
		}
		last := l.raft.LastIndex()
		_, err := c.nodes[1-c.leader()].Apply(ctx, &ApplyServices{Services: []service.Service{s}})
		var limit *LimitError
		if !errors.As(err, &limit) || !strings.Contains(err.Error(), "cluster member") {
			t.Errorf("service %s: %v, want a refusal naming a cluster member", s.Name, err)
		}
		if got := l.raft.LastIndex(); got != last {
			t.Errorf("service %s: the refusal took log entries (%d -> %d)", s.Name, last, got)
		}
	}
	ops := tenant.Tenant{Name: "ops", AllowReserved: true}
	if _, err := l.Apply(ctx, &ApplyTenants{Tenants: []tenant.Tenant{ops}}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Apply(ctx, &ApplyServices{Services: []service.Service{toMember}}); err != nil {
		t.Errorf("a service of a Tenant allowed reserved addresses: %v", err)
	}
}
