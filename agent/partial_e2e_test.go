package agent_test

import (
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/service"
)

// TestOneServiceRefused: the kernel refuses a write of one service (its
// backends map is full of the reply entries of its drained backends, as a
// service that replaced its backends many times leaves them): the status
// names the service and why, and a set-weight --wait of another service
// (a rollback to 0) returns at once and reaches the kernel. Once the map
// has room the refused service goes in at the agent's retry, with no new
// write.
func TestOneServiceRefused(t *testing.T) {
	e := setup(t, netlab.Config{}, "auto")
	a := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 500)
	b := web("other", e.lab, netlab.VIP4, 81, netlab.HelloPort+1, service.TCP, 2000)
	if err := e.agent.Apply(e.ctx, []service.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	backends, err := ebpf.LoadPinnedMap(filepath.Join(e.agent.PinPath(), "maps", "backends"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer backends.Close()
	junk := fillWithDrained(t, backends, e.kernelID(t, a))
	t.Logf("%d drained reply entries of %s fill the backends map", len(junk), a.Name)

	// web gains a backend: its new reply entry does not fit.
	grown := a
	grown.Stable = append(slices.Clone(a.Stable), service.Backend{Addr: netip.AddrPortFrom(e.lab.Stable[0].Addr4, netlab.HelloPort+2)})
	if err := e.agent.Apply(e.ctx, []service.Service{grown, b}); err != nil {
		t.Fatalf("apply with web refused by the kernel: %v (the index counts as applied: every other service is)", err)
	}
	wantStatusError(t, e, a.Name, "not applied on this node", "one of its maps is full")

	// A rollback of the other service waits for the kernel and gets there.
	start := time.Now()
	_, err = e.agent.Client().SetWeight(e.ctx, b.Name, "0%", api.WriteOptions{WaitApplied: true, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("set-weight --wait of %s beside the refused %s: %v", b.Name, a.Name, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("set-weight --wait took %s", took)
	}
	b.CanaryWeight = 0
	e.waitKernelWeight(t, b)
	if ks, v := e.kernelService(t, a); len(ks.Backends[service.Stable]) != len(a.Stable) {
		v.Close()
		t.Fatalf("web has %d stable backends in the kernel, want its previous %d", len(ks.Backends[service.Stable]), len(a.Stable))
	} else {
		v.Close()
	}

	// Room again: the agent's retry installs web without another write.
	if n, err := backends.BatchDelete(junk, nil); err != nil {
		t.Fatalf("delete the drained entries (%d deleted): %v", n, err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		ks, v := e.kernelService(t, a)
		v.Close()
		if len(ks.Backends[service.Stable]) == len(grown.Stable) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web still has %d stable backends in the kernel 15 s after the map had room", len(ks.Backends[service.Stable]))
		}
		time.Sleep(200 * time.Millisecond)
	}
	wantStatusError(t, e, a.Name)
}

// kernelID is the service id of s in the agent's kernel.
func (e *env) kernelID(t *testing.T, s service.Service) uint32 {
	t.Helper()
	ks, v := e.kernelService(t, s)
	v.Close()
	return ks.ID
}

// fillWithDrained fills the backends map with reply entries of service id
// (copies of one of its own, on addresses no service uses), which the
// agent keeps as the drained backends of a live service. It returns their
// keys.
func fillWithDrained(t *testing.T, m *ebpf.Map, id uint32) []bpf.SteerEndpoint {
	t.Helper()
	var value bpf.SteerReply
	var key bpf.SteerEndpoint
	found := false
	it := m.Iterate()
	for it.Next(&key, &value) {
		if value.SvcId == id {
			found = true
			break
		}
	}
	if !found {
		t.Fatalf("no reply entry of service id %d: %v", id, it.Err())
	}
	var all []bpf.SteerEndpoint
	const chunk = 8192
	for i := 0; ; i += chunk {
		keys := make([]bpf.SteerEndpoint, chunk)
		values := make([]bpf.SteerReply, chunk)
		for j := range keys {
			n := uint32(i + j)
			keys[j] = bpf.SteerEndpoint{Addr: netip.AddrFrom16([16]byte{0xfd, 0, 0xde, 0xad, 12: byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}).As16(), Port: 80, Proto: key.Proto}
			values[j] = value
		}
		n, err := m.BatchUpdate(keys, values, nil)
		all = append(all, keys[:n]...)
		if errors.Is(err, unix.E2BIG) || errors.Is(err, unix.ENOSPC) {
			return all
		}
		if err != nil {
			t.Fatalf("fill the backends map (%d entries in): %v", len(all), err)
		}
		if len(all) > 1<<21 {
			t.Fatal("the backends map does not fill")
		}
	}
}

// wantStatusError checks the status of service name on the node says each
// of want in its error (none: no error).
func wantStatusError(t *testing.T, e *env, name string, want ...string) {
	t.Helper()
	st, err := e.agent.Client().Status(e.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Services) != 1 || len(st.Services[0].Nodes) != 1 {
		t.Fatalf("status of %s: %+v", name, st)
	}
	got := st.Services[0].Nodes[0].Error
	if len(want) == 0 && got != "" {
		t.Errorf("status error of %s: %q, want none", name, got)
	}
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("status error of %s: %q, want it to say %q", name, got, w)
		}
	}
	t.Logf("status of %s on the node: %q", name, got)
}
