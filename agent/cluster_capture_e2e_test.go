package agent_test

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

// TestClusterCapture: graylanectl in g1's namespace asks gw's HTTPS API
// for captures of a service of tenant b: a tenant-a token is refused; an
// admin's --node all merges the three nodes' streams (gw's carries the
// traffic) in time order, with each node's interface and final
// statistics; --node g1 is fetched from g1 through gw; an unknown node is
// refused naming the members.
func TestClusterCapture(t *testing.T) {
	const admin, teamA = "admin-0123456789abcdef0123456789", "team-a-0123456789abcdef012345678"
	tr := newTrio(t, labagent.Cluster{}, map[string]string{admin: "*", teamA: "a"})
	s := trioService(tr.lab)
	s.Tenant = "b"
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, 0, 1, 2)
	for _, h := range tr.lab.Backends() {
		if _, err := h.StartServers(tr.ctx); err != nil {
			t.Fatal(err)
		}
	}
	bin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	server := "https://" + netip.AddrPortFrom(netlab.GatewayBackend4, labagent.APIPort).String()
	ca := pki.LabFiles(tr.certs, "gw").CA
	run := func(token string, args ...string) (string, int) {
		cmd := tr.hosts[1].Command(tr.ctx, bin, append([]string{"--server", server, "--ca", ca}, args...)...)
		cmd.Env = append(os.Environ(), "GRAYLANE_TOKEN="+token)
		return exitCode(t, cmd)
	}
	dir := t.TempDir()
	if out, code := run(teamA, "capture", "web", "--count", "1", "-w", filepath.Join(dir, "a.pcapng")); code != 1 || !strings.Contains(out, `service "web" does not exist`) {
		t.Errorf("tenant a's capture of tenant b's service: exit %d:\n%s", code, out)
	}
	if out, code := run(admin, "capture", "web", "--node", "nope", "--count", "1", "-w", filepath.Join(dir, "n.pcapng")); code != 1 || !strings.Contains(out, "not a member") {
		t.Errorf("capture on node nope: exit %d:\n%s", code, out)
	}

	all := filepath.Join(dir, "all.pcapng")
	var wg sync.WaitGroup
	wg.Go(func() {
		if out, code := run(admin, "capture", "web", "--node", "all", "--percent", "100%", "--duration", "5s", "-w", all); code != 0 {
			t.Errorf("capture --node all: exit %d:\n%s", code, out)
		}
	})
	time.Sleep(2 * time.Second) // the members start their captures
	res, err := tr.lab.Client.HelloMany(tr.ctx, netip.AddrPortFrom(s.VIP, s.Port), nil, 50, 4)
	if err != nil || res.OK != 50 {
		t.Fatalf("connections: %v (%v)", res, err)
	}
	wg.Wait()
	checkMerged(t, all, map[string]bool{"gw": true, "g1": false, "g2": false})

	one := filepath.Join(dir, "g1.pcapng")
	if out, code := run(admin, "capture", "web", "--node", "g1", "--duration", "1s", "-w", one); code != 0 {
		t.Errorf("capture --node g1: exit %d:\n%s", code, out)
	}
	checkMerged(t, one, map[string]bool{"g1": false})
}

// checkMerged reads a capture: one interface per node named in nodes
// (true: it carries packets), packets in time order, and each
// interface's final statistics adding up (written + dropped = seen).
func checkMerged(t *testing.T, path string, nodes map[string]bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type ifaceStats struct{ seen, dropped uint64 }
	stats := map[int]ifaceStats{}
	opts := pcapgo.DefaultNgReaderOptions
	opts.StatisticsCallback = func(i int, s pcapgo.NgInterfaceStatistics) {
		stats[i] = ifaceStats{s.PacketsReceived, s.PacketsDropped}
	}
	r, err := pcapgo.NewNgReader(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	perIface := map[int]uint64{}
	var last time.Time
	for {
		_, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		if ci.Timestamp.Before(last) {
			t.Errorf("a packet at %v after one at %v", ci.Timestamp, last)
		}
		last = ci.Timestamp
		perIface[ci.InterfaceIndex]++
	}
	if r.NInterfaces() != len(nodes) {
		t.Fatalf("%s has %d interfaces, want one per node of %v", path, r.NInterfaces(), nodes)
	}
	for i := range r.NInterfaces() {
		ifc, err := r.Interface(i)
		if err != nil {
			t.Fatal(err)
		}
		node, _, _ := strings.Cut(ifc.Name, ":")
		carries, ok := nodes[node]
		if !ok {
			t.Errorf("interface %q is of no node of %v", ifc.Name, nodes)
		}
		if carries != (perIface[i] > 0) {
			t.Errorf("interface %q has %d packets", ifc.Name, perIface[i])
		}
		if st := stats[i]; perIface[i]+st.dropped != st.seen {
			t.Errorf("interface %q: %d written + %d dropped, seen %d", ifc.Name, perIface[i], st.dropped, st.seen)
		}
		t.Logf("interface %q: %d packets, statistics %+v", ifc.Name, perIface[i], stats[i])
	}
}
