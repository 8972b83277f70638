package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/service"
)

// pinDir is a fresh pin directory of the test's own on /sys/fs/bpf,
// removed (with whatever is pinned in it) at the end.
func pinDir(t *testing.T) string {
	t.Helper()
	testenv.RequirePrivileges(t)
	dir := filepath.Join("/sys/fs/bpf", fmt.Sprintf("graylane-test-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), os.Getpid()))
	_ = Cleanup(dir, nil, slog.New(slog.DiscardHandler))
	t.Cleanup(func() {
		if err := Cleanup(dir, nil, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pin directory left after Cleanup: %v", err)
		}
	})
	return dir
}

// fakeFlows writes n flow entries, as the programs would for live flows.
func fakeFlows(t *testing.T, dp *Datapath, n int) {
	t.Helper()
	for i := range n {
		k := bpf.SteerFlowKey{Sport: uint16(1000 + i), Dport: 80, Proto: 6}
		v := bpf.SteerFlow{Pool: 1, SvcId: 0}
		if err := dp.objs.Flows.Update(k, v, ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
}

func countEntries(t *testing.T, m *ebpf.Map) int {
	t.Helper()
	n := 0
	k := make([]byte, m.KeySize())
	v := make([]byte, m.ValueSize())
	it := m.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// restart releases dp and starts a data path on the same pins, logging to
// the returned buffer; owner releases it at its end.
func restart(t, owner *testing.T, dp *Datapath, opts Options) (*Datapath, *bytes.Buffer) {
	t.Helper()
	if dp != nil {
		if err := dp.Release(); err != nil {
			t.Fatal(err)
		}
	}
	var log bytes.Buffer
	opts.Logger = slog.New(slog.NewTextHandler(&log, nil))
	next, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() { next.Release() })
	return next, &log
}

// TestAdoptPins: a data path started on a previous one's pins keeps its
// flows, services (with their ids) and counters; a layout change resets
// exactly the maps it names; a new flow table size migrates the flows.
func TestAdoptPins(t *testing.T) {
	dir := pinDir(t)
	opts := Options{PinPath: dir, FlowTable: 1024, MaxServices: 8}
	first, _ := restart(t, t, nil, opts)
	a := webService("a", vip4, service.TCP, 1234)
	b := webService("b", vip6, service.TCP, 500)
	b.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("fd00:6c61::/48"), Pool: service.Canary}}
	if err := first.Apply([]service.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	if err := first.RecordIndex(42); err != nil {
		t.Fatal(err)
	}
	fakeFlows(t, first, 10)
	r := &adoptRun{top: t, dir: dir, opts: opts, first: first, a: a, b: b, idB: first.services["b"].id}
	// In this order: each scenario restarts on the pins the one before left.
	t.Run("preview", r.preview)
	t.Run("adopt", r.adopt)
	t.Run("maps new in this version", r.mapsNewInThisVersion)
	t.Run("service maps of another layout", r.serviceMapsOfAnotherLayout)
	t.Run("layout changed", r.layoutChanged)
	t.Run("flow table resized", r.flowTableResized)
}

// adoptRun is what TestAdoptPins' scenarios share: the pins, the options,
// the services a and b (b's id as first installed), and the data path the
// next scenario restarts from, which each scenario that gets that far
// replaces with its own.
type adoptRun struct {
	top   *testing.T // releases the data paths at its end
	dir   string
	opts  Options
	first *Datapath
	a, b  service.Service
	idB   uint32
}

// expectLog checks that log holds every one of want.
func expectLog(t *testing.T, log *bytes.Buffer, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(log.String(), w) {
			t.Errorf("log lacks %q:\n%s", w, log)
		}
	}
}

func (r *adoptRun) preview(t *testing.T) {
	empty := r.opts
	empty.PinPath = filepath.Join(r.dir, "nothing-here")
	if plan, err := Preview(empty); err != nil || plan != nil {
		t.Errorf("preview of an empty path: %v %v", plan, err)
	}
	fates := func(o Options) map[string]string {
		plan, err := Preview(o)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, p := range plan {
			out[p.Map] = p.Fate
		}
		return out
	}
	same := fates(r.opts)
	if len(same) != reflect.TypeFor[bpf.SteerMaps]().NumField() || same[bpf.SteerMapFlows] != "adopted" || same[bpf.SteerMapServices] != "adopted" {
		t.Errorf("preview with the same options: %v", same)
	}
	bigger := r.opts
	bigger.FlowTable = 2048
	if got := fates(bigger); got[bpf.SteerMapFlows] != "migrated" || got[bpf.SteerMapServices] != "adopted" {
		t.Errorf("preview with a larger flow table: %v", got)
	}
}

func (r *adoptRun) adopt(t *testing.T) {
	a, b := r.a, r.b
	dp, log := restart(t, r.top, r.first, r.opts)
	if got := dp.StateIndex(); got != 42 {
		t.Errorf("state index %d, want 42", got)
	}
	// Before any apply the kernel still steers as before.
	ks, ok, err := dp.ReadKernel(a.Frontend())
	if err != nil || !ok || ks.Weight != 1234 {
		t.Fatalf("adopted service a: %+v %v %v", ks, ok, err)
	}
	// Swap the names' ids round: the adopted ids go by frontend.
	if err := dp.Apply([]service.Service{a, b}); err != nil {
		t.Fatal(err)
	}
	if got := dp.services["b"].id; got != r.idB {
		t.Errorf("service b has id %d after the restart, had %d", got, r.idB)
	}
	if n := countEntries(t, dp.objs.Flows); n != 10 {
		t.Errorf("%d flows after the restart, want 10", n)
	}
	for _, s := range []service.Service{a, b} {
		ks, ok, err := dp.ReadKernel(s.Frontend())
		if err != nil || !ok || ks.Weight != s.CanaryWeight || len(ks.Backends[service.Canary]) != 1 {
			t.Errorf("service %s after the restart: %+v %v %v", s.Name, ks, ok, err)
		}
	}
	if n := countEntries(t, dp.objs.Pins); n != 1 {
		t.Errorf("%d pins, want 1", n)
	}
	if !strings.Contains(log.String(), "took over the previous agent's data path") {
		t.Errorf("log:\n%s", log)
	}
	r.first = dp
}

func (r *adoptRun) mapsNewInThisVersion(t *testing.T) {
	// As if the old agent predated the frontend filter: its pins lack
	// the maps derived from the services.
	for _, name := range derivedMaps {
		if err := os.Remove(filepath.Join(r.dir, "maps", name)); err != nil {
			t.Fatal(err)
		}
	}
	dp, log := restart(t, r.top, r.first, r.opts)
	if dp.adopted == nil {
		t.Fatal("the service group was reset for maps derived from it")
	}
	if err := dp.Apply([]service.Service{r.a, r.b}); err != nil {
		t.Fatal(err)
	}
	if got := dp.services["b"].id; got != r.idB {
		t.Errorf("service b has id %d, had %d", got, r.idB)
	}
	k, err := readFilter(dp.objs.FrontendFilter)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k, filterOf(dp.services)) {
		t.Error("the new frontend filter does not hold the adopted services")
	}
	for _, in := range dp.services {
		var fe bpf.SteerFrontend
		if err := dp.objs.Frontends.Lookup(in.id, &fe); err != nil || fe != frontendOf(in) {
			t.Errorf("frontend of service %s (id %d): %+v %v, want %+v", in.svc.Name, in.id, fe, err, frontendOf(in))
		}
	}
	expectLog(t, log, `map=frontends`, `map=services fate=adopted`)
	r.first = dp
}

func (r *adoptRun) serviceMapsOfAnotherLayout(t *testing.T) {
	// As an upgrade over an agent whose tables were a hash map: the
	// service group is rebuilt, the flows stay.
	if err := r.first.adoption.info.Update(infoKey("layout:"+bpf.SteerMapTables), uint64(1), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	flows := countEntries(t, r.first.objs.Flows)
	dp, log := restart(t, r.top, r.first, r.opts)
	if dp.adopted != nil {
		t.Error("services read back from a service group being rebuilt")
	}
	if err := dp.Apply([]service.Service{r.a, r.b}); err != nil {
		t.Fatal(err)
	}
	if n := countEntries(t, dp.objs.Flows); n != flows {
		t.Errorf("%d flows after the upgrade, want the %d before", n, flows)
	}
	for _, in := range dp.services {
		ks, ok, err := dp.ReadKernel(in.svc.Frontend())
		if err != nil || !ok || len(ks.Backends[service.Stable]) != len(in.svc.Stable) {
			t.Errorf("service %s after the rebuild: %+v %v %v", in.svc.Name, ks, ok, err)
		}
	}
	expectLog(t, log, `map=tables fate=reset why="its key or value layout changed"`, `map=flows fate=adopted`)
	r.first = dp
}

func (r *adoptRun) layoutChanged(t *testing.T) {
	// As if the old agent's flow and tables maps had another layout.
	for _, name := range []string{bpf.SteerMapFlows, bpf.SteerMapTables} {
		if err := r.first.adoption.info.Update(infoKey("layout:"+name), uint64(1), ebpf.UpdateAny); err != nil {
			t.Fatal(err)
		}
	}
	dp, log := restart(t, r.top, r.first, r.opts)
	if n := countEntries(t, dp.objs.Flows); n != 0 {
		t.Errorf("%d flows in a reset flow table", n)
	}
	if dp.adopted != nil {
		t.Error("services read back from a reset service group")
	}
	if err := dp.Apply([]service.Service{r.a}); err != nil {
		t.Fatal(err)
	}
	expectLog(t, log,
		`map=flows fate=reset why="its key or value layout changed" cost="live flows lose`,
		`map=services fate=reset why="rebuilt with the other service maps: tables is reset`,
		`map=pool_counters fate=adopted`,
	)
	if _, ok, _ := dp.ReadKernel(r.b.Frontend()); ok {
		t.Error("service b survived an apply without it")
	}
	if ks, ok, err := dp.ReadKernel(r.a.Frontend()); err != nil || !ok || ks.Weight != 1234 {
		t.Errorf("service a rebuilt: %+v %v %v", ks, ok, err)
	}
	r.first = dp
}

func (r *adoptRun) flowTableResized(t *testing.T) {
	fakeFlows(t, r.first, 7)
	bigger := r.opts
	bigger.FlowTable = 4096
	dp, log := restart(t, r.top, r.first, bigger)
	if err := dp.Apply([]service.Service{r.a}); err != nil {
		t.Fatal(err)
	}
	if n := countEntries(t, dp.objs.Flows); n != 7 {
		t.Errorf("%d flows after the migration, want 7", n)
	}
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(r.dir, "maps", bpf.SteerMapFlows), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if pinned.MaxEntries() != 4096 {
		t.Errorf("pinned flow table has %d entries, want the new 4096", pinned.MaxEntries())
	}
	if !strings.Contains(log.String(), "map=flows fate=migrated") || !strings.Contains(log.String(), "entries=7") {
		t.Errorf("log:\n%s", log)
	}
	r.first = dp
}
