package cluster

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/graylane/graylane/pkg/breaker"
	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/rollout"
	"github.com/graylane/graylane/pkg/service"
)

func svc(name, vip string, weight service.Weight) service.Service {
	n := strings.TrimPrefix(vip, "10.0.0.")
	return service.Service{
		Name: name, Tenant: service.DefaultTenant, VIP: netip.MustParseAddr(vip), Port: 80, Protocol: service.TCP,
		Stable:       []service.Backend{{Addr: netip.MustParseAddrPort("10.1.0." + n + ":8080")}},
		Canary:       []service.Backend{{Addr: netip.MustParseAddrPort("10.2.0." + n + ":8080")}},
		CanaryWeight: weight,
	}
}

func apply(t *testing.T, f *FSM, index uint64, c Command) error {
	t.Helper()
	data, err := Encode(c)
	if err != nil {
		t.Fatal(err)
	}
	res := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
	if res == nil {
		return nil
	}
	return res.(error)
}

func TestCommands(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	changed := f.Changed()
	if err := apply(t, f, 1, &ApplyServices{Services: []service.Service{svc("a", "10.0.0.1", 500), svc("b", "10.0.0.2", 0)}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("no change notified")
	}
	steps := []struct {
		name string
		cmd  Command
		want string // "" ok, else a substring of the error
	}{
		{"weight", &SetWeight{Name: "a", Weight: 1500}, ""},
		{"weight of nothing", &SetWeight{Name: "zzz", Weight: 1}, "does not exist"},
		{"weight without canary", &SetWeight{Name: "b", Weight: 100}, ""},
		{"pin", &SetPin{Name: "a", Prefix: netip.MustParsePrefix("10.9.0.0/16"), Pool: service.Canary}, ""},
		{"pin again, other pool", &SetPin{Name: "a", Prefix: netip.MustParsePrefix("10.9.1.0/16"), Pool: service.Stable}, ""},
		{"remove pin", &RemovePin{Name: "a", Prefix: netip.MustParsePrefix("10.9.0.0/16")}, ""},
		{"remove missing pin", &RemovePin{Name: "a", Prefix: netip.MustParsePrefix("10.9.0.0/16")}, "does not exist"},
		{"duplicate frontend", &ApplyServices{Services: []service.Service{svc("c", "10.0.0.1", 0)}}, "spec.vip"},
		{"delete", &DeleteService{Name: "b"}, ""},
		{"delete again", &DeleteService{Name: "b"}, "does not exist"},
	}
	for i, s := range steps {
		applyStep(t, f, uint64(i+2), s.name, s.cmd, s.want)
		if _, index := f.State(); index != uint64(i+2) {
			t.Fatalf("%s: index %d", s.name, index)
		}
	}
	st, _ := f.State()
	a := st.Services["a"]
	if a.CanaryWeight != 1500 || len(a.Pins) != 0 {
		t.Fatalf("service a: %+v", a)
	}
	if _, ok := st.Services["b"]; ok {
		t.Fatal("b not deleted")
	}
	var conflict *ConflictError
	if err := apply(t, f, 99, &SetWeight{Name: "a", Weight: 10001}); !errors.As(err, &conflict) {
		t.Fatalf("weight above 100%%: %v, want a conflict", err)
	}
}

// applyStep applies cmd at index and checks the verdict: no error when
// want is "", else an error containing want that left the state as it
// was. It returns the state after.
func applyStep(t *testing.T, f *FSM, index uint64, name string, cmd Command, want string) State {
	t.Helper()
	before, _ := f.State()
	err := apply(t, f, index, cmd)
	if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
		t.Fatalf("%s: %v, want %q", name, err, want)
	}
	after, _ := f.State()
	if err != nil && !equalState(before, after) {
		t.Fatalf("%s: a refused command changed the state", name)
	}
	return after
}

// equalState compares two states but their audit logs (a refused
// command changes nothing but the record that it was refused).
func equalState(a, b State) bool {
	a.Audit, b.Audit = nil, nil
	var x, y bytes.Buffer
	(&fsmSnapshot{data: snapshotData{State: a}}).Persist(nopSink{&x})
	(&fsmSnapshot{data: snapshotData{State: b}}).Persist(nopSink{&y})
	return x.String() == y.String()
}

type nopSink struct{ io.Writer }

func (nopSink) ID() string    { return "test" }
func (nopSink) Cancel() error { return nil }
func (nopSink) Close() error  { return nil }

func TestSnapshotRoundTrip(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	s := svc("a", "10.0.0.1", 2500)
	s.Pins = []service.Pin{{Prefix: netip.MustParsePrefix("2001:db8::/32"), Pool: service.Canary}}
	s.Canary = append(s.Canary, service.Backend{Addr: netip.MustParseAddrPort("10.2.0.9:8080"), Weight: 3})
	s.LatencyThresholds = []time.Duration{600 * time.Millisecond, 800 * time.Millisecond}
	s.App, s.Match = service.AppGRPC, []service.MatchRule{
		{Header: &service.FieldMatch{Name: "X-Canary", Prefix: "v2"}, Pool: service.Canary},
		{GRPCMetadata: &service.FieldMatch{Name: "x-debug", Present: true}, Pool: service.Stable},
		{SNI: &service.SNIMatch{Name: "*.example.com"}, Pool: service.Canary},
	}
	if err := apply(t, f, 7, &ApplyServices{Services: []service.Service{s, svc("b", "10.0.0.2", 0)}}); err != nil {
		t.Fatal(err)
	}
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := snap.Persist(nopSink{&buf}); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(slog.New(slog.DiscardHandler))
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	a, ai := f.State()
	b, bi := g.State()
	if !equalState(a, b) || ai != bi || bi != 7 {
		t.Fatalf("restored state differs (index %d vs %d)", ai, bi)
	}
	if got := b.Services["a"]; got.App != service.AppGRPC || !reflect.DeepEqual(got.Match, s.Match) {
		t.Fatalf("restored app %q and rules %+v; want %q and %+v", got.App, got.Match, s.App, s.Match)
	}
	if err := g.Restore(io.NopCloser(strings.NewReader(`{"version":99}`))); err == nil {
		t.Fatal("a snapshot of a newer version was restored")
	}
}

// TestUnknownCommands: an ignorable unknown command is passed over; an
// entry that is no command this node can read is skipped and counted —
// never a panic — and leaves the state as it was.
func TestUnknownCommands(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	if res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(IgnoreIfUnknown | 77), '{', '}'}}); res != nil {
		t.Fatalf("an ignorable unknown command: %v", res)
	}
	if _, i := f.State(); i != 1 {
		t.Fatalf("index %d after skipping", i)
	}
	apply(t, f, 2, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 5)}})
	before, _ := f.State()
	for i, data := range [][]byte{
		{77, '{', '}'},                      // unknown, no ignore bit
		{},                                  // empty
		{byte(CmdSetWeight), 'n', 'o', 'p'}, // a known type, no JSON
		[]byte("\x01{\"services\":[{\"name\":1}]}"), // a known type, wrong JSON types
	} {
		index := uint64(3 + i)
		res := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data})
		var invalid *InvalidError
		if err, ok := res.(error); !ok || !errors.As(err, &invalid) {
			t.Errorf("entry %q: result %v, want an *InvalidError", data, res)
		}
		if got := f.Skipped(); got != uint64(i+1) {
			t.Errorf("entry %q: %d skipped, want %d", data, got, i+1)
		}
		if after, at := f.State(); at != index || !equalState(before, after) {
			t.Errorf("entry %q changed the state (index %d)", data, at)
		}
	}
}

// FuzzApply: no entry, whatever its bytes, makes the FSM panic or leaves
// it with a state that fails validation.
func FuzzApply(f *testing.F) {
	for _, c := range []Command{
		&ApplyServices{Services: []service.Service{svc("b", "10.0.0.2", 5)}},
		&SetWeight{Name: "web", Weight: 10000},
		&SetPin{Name: "web", Prefix: netip.MustParsePrefix("10.9.0.0/16"), Pool: service.Canary},
		&Rollout{Run: rollout.Run{Release: "r", Service: "web"}, Swap: true},
		&DeleteService{Name: "web"},
	} {
		data, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{byte(CmdApply), '{', '}'})
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := NewFSM(nil)
		apply(t, fsm, 1, &ApplyServices{Services: []service.Service{svc("web", "10.0.0.1", 5)}})
		fsm.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
		st, _ := fsm.State()
		if err := service.ValidateSet(st.ServiceList()); err != nil {
			t.Fatalf("entry %q left an invalid state: %v", data, err)
		}
	})
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, c := range []Command{
		&ApplyServices{Services: []service.Service{svc("a", "10.0.0.1", 5)}},
		&DeleteService{Name: "a"},
		&SetWeight{Name: "a", Weight: 1},
		&SetPin{Name: "a", Prefix: netip.MustParsePrefix("10.0.0.0/8"), Pool: service.Canary},
		&RemovePin{Name: "a", Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		&Apply{Services: []service.Service{svc("a", "10.0.0.1", 5)}, Releases: []release.Release{testRelease("r", "a")}},
		&DeleteRelease{Name: "r"},
		&Rollout{Base: 3, Run: rollout.Run{Release: "r", Service: "a", Phase: rollout.Running}},
		&SetMirror{Name: "a", Mirror: &service.Mirror{Percent: 100, To: "capture", Snaplen: 256}},
		&SetMirror{Name: "a"},
	} {
		data, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := Decode(data)
		if err != nil || back.Type() != c.Type() {
			t.Fatalf("%T: %v", c, err)
		}
		again, _ := Encode(back)
		if !bytes.Equal(again, data) {
			t.Fatalf("%T: %s != %s", c, again, data)
		}
	}
	for _, bad := range [][]byte{nil, {byte(CmdSetWeight), '{'}, {byte(CmdSetWeight), '[', ']'}, {byte(CmdSetMirror), '{'}, []byte("\x09{\"mirror\":7}")} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

// FuzzDecode: any bytes decode to a command or an error, never a panic.
func FuzzDecode(f *testing.F) {
	for _, c := range []Command{&SetWeight{Name: "a", Weight: 1}, &ApplyServices{Services: []service.Service{svc("a", "10.0.0.1", 5)}},
		&SetMirror{Name: "a", Mirror: &service.Mirror{Percent: 100, To: "capture", Snaplen: 256}}} {
		data, _ := Encode(c)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		Decode(data)
	})
}

func testRelease(name, svcName string) release.Release {
	w5, w100 := service.Weight(500), service.Weight(10000)
	return release.Release{Name: name, Service: svcName,
		Steps: []release.Step{
			{SetWeight: &w5, Pause: &release.Pause{Duration: time.Minute}},
			{SetWeight: &w100, Verify: []release.Gate{{TCP: &release.TCPGate{}, Timeout: time.Second}, {HTTP: &release.HTTPGate{Path: "/healthz", ExpectStatus: 200, ExpectJSON: map[string]string{".db.status": "UP"}}, Timeout: time.Second}}},
		},
		Analysis: release.Analysis{Window: time.Minute, MinRequests: 100, Breaker: release.Breaker{
			OpenP99Above: 800 * time.Millisecond, OpenErrorRate: 0.035, CloseP99AtMost: 600 * time.Millisecond,
			CloseErrorRate: 0.012, CloseWindows: 2, CoolDown: time.Minute}},
		OnBreach: release.Rollback,
	}
}

// TestReleaseCommands: releases are applied with their service, refused
// without it; a run's decisions are recorded only on the run's current
// Seq, and carry the weight they set; running releases and their services
// cannot be deleted or replaced.
func TestReleaseCommands(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	at := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	w5 := service.Weight(500)
	run := rollout.Run{Release: "r", Service: "a", Phase: rollout.Running, StepStarted: at, StepWeight: 500}
	steps := []struct {
		name string
		cmd  Command
		want string
	}{
		{"release without its service", &Apply{Releases: []release.Release{testRelease("r", "a")}}, `spec.service "a" does not exist`},
		{"service and release together", &Apply{Services: []service.Service{svc("a", "10.0.0.1", 0)}, Releases: []release.Release{testRelease("r", "a")}}, ""},
		{"decision on a stale seq", &Rollout{Base: 3, Run: run, Weight: &w5}, "changed meanwhile"},
		{"decision for another service", &Rollout{Base: 0, Run: rollout.Run{Release: "r", Service: "b"}}, `not "b"`},
		{"decision for no release", &Rollout{Base: 0, Run: rollout.Run{Release: "zz", Service: "a"}}, "does not exist"},
		{"start", &Rollout{Base: 0, Run: run, Weight: &w5}, ""},
		{"the same decision again", &Rollout{Base: 0, Run: run, Weight: &w5}, "changed meanwhile"},
		{"delete the running release", &DeleteRelease{Name: "r"}, "is running"},
		{"delete its service", &DeleteService{Name: "a"}, "running release"},
		{"replace the running release", &Apply{Releases: []release.Release{testRelease("r", "a")}}, "is running"},
		{"abort", &Rollout{Base: 1, Run: rollout.Run{Release: "r", Service: "a", Phase: rollout.Aborted}, Weight: new(service.Weight)}, ""},
		{"delete the release", &DeleteRelease{Name: "r"}, ""},
		{"delete it again", &DeleteRelease{Name: "r"}, "does not exist"},
	}
	for i, s := range steps {
		after := applyStep(t, f, uint64(i+1), s.name, s.cmd, s.want)
		if s.name == "start" {
			if got := after.Services["a"].CanaryWeight; got != 500 {
				t.Fatalf("start: weight %v, want 5%%", got)
			}
			if got := after.Runs["r"]; got.Seq != 1 || got.Phase != rollout.Running {
				t.Fatalf("start: run %+v", got)
			}
		}
		if s.name == "abort" && after.Services["a"].CanaryWeight != 0 {
			t.Fatalf("abort: weight %v, want 0", after.Services["a"].CanaryWeight)
		}
	}
}

// TestSnapshotWithReleases: releases and runs survive a snapshot.
func TestSnapshotWithReleases(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	if err := apply(t, f, 1, &Apply{Services: []service.Service{svc("a", "10.0.0.1", 0)}, Releases: []release.Release{testRelease("r", "a")}}); err != nil {
		t.Fatal(err)
	}
	run := rollout.Run{Release: "r", Service: "a", Phase: rollout.Paused, Step: 1, Reason: "gate http failed",
		StepStarted: time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC), Remaining: 42 * time.Second,
		Breaker: breaker.Breaker{State: breaker.HalfOpen, HealthyWindows: 1}}
	run.Record(rollout.Event{Kind: "gate", Message: "http failed", Numbers: map[string]float64{"status": 503}, Output: "x"})
	if err := apply(t, f, 2, &Rollout{Run: run}); err != nil {
		t.Fatal(err)
	}
	snap, _ := f.Snapshot()
	var buf bytes.Buffer
	if err := snap.Persist(nopSink{&buf}); err != nil {
		t.Fatal(err)
	}
	g := NewFSM(slog.New(slog.DiscardHandler))
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	a, _ := f.State()
	b, _ := g.State()
	if !equalState(a, b) || len(b.Runs["r"].History) != 1 || b.Releases["r"].Steps[1].Verify[1].HTTP.ExpectJSON[".db.status"] != "UP" {
		t.Fatalf("restored state differs:\n%+v\n%+v", a, b)
	}
}
