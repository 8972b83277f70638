package cluster

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

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
		before, _ := f.State()
		err := apply(t, f, uint64(i+2), s.cmd)
		if s.want == "" && err != nil || s.want != "" && (err == nil || !strings.Contains(err.Error(), s.want)) {
			t.Fatalf("%s: %v, want %q", s.name, err, s.want)
		}
		after, index := f.State()
		if index != uint64(i+2) {
			t.Fatalf("%s: index %d", s.name, index)
		}
		if err != nil && !equalState(before, after) {
			t.Fatalf("%s: a refused command changed the state", s.name)
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

func equalState(a, b State) bool {
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
	if err := g.Restore(io.NopCloser(strings.NewReader(`{"version":99}`))); err == nil {
		t.Fatal("a snapshot of a newer version was restored")
	}
}

func TestUnknownCommands(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	if res := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{byte(IgnoreIfUnknown | 77), '{', '}'}}); res != nil {
		t.Fatalf("an ignorable unknown command: %v", res)
	}
	if _, i := f.State(); i != 1 {
		t.Fatalf("index %d after skipping", i)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("an unknown command without the ignore bit did not stop the FSM")
		}
	}()
	f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: []byte{77, '{', '}'}})
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, c := range []Command{
		&ApplyServices{Services: []service.Service{svc("a", "10.0.0.1", 5)}},
		&DeleteService{Name: "a"},
		&SetWeight{Name: "a", Weight: 1},
		&SetPin{Name: "a", Prefix: netip.MustParsePrefix("10.0.0.0/8"), Pool: service.Canary},
		&RemovePin{Name: "a", Prefix: netip.MustParsePrefix("10.0.0.0/8")},
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
	for _, bad := range [][]byte{nil, {byte(CmdSetWeight), '{'}, {byte(CmdSetWeight), '[', ']'}} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("decoded %q", bad)
		}
	}
}

// FuzzDecode: any bytes decode to a command or an error, never a panic.
func FuzzDecode(f *testing.F) {
	for _, c := range []Command{&SetWeight{Name: "a", Weight: 1}, &ApplyServices{Services: []service.Service{svc("a", "10.0.0.1", 5)}}} {
		data, _ := Encode(c)
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		Decode(data)
	})
}
