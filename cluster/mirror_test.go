package cluster

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/graylane/graylane/pkg/service"
)

// TestSetMirror: SetMirror sets, replaces and stops a service's mirroring;
// a service that does not exist is not found, and a mirror the service
// would not validate with is a conflict that changes nothing.
func TestSetMirror(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	if err := apply(t, f, 1, &ApplyServices{Services: []service.Service{svc("a", "10.0.0.1", 500), svc("b", "10.0.0.2", 0)}}); err != nil {
		t.Fatal(err)
	}
	on := &service.Mirror{Percent: 100, To: "mirror0"}
	capture := &service.Mirror{Percent: 50, To: "capture", Snaplen: 256}
	steps := []struct {
		name string
		cmd  Command
		want string          // "" ok, else a substring of the error
		a    *service.Mirror // a's mirror after the step
	}{
		{"on", &SetMirror{Name: "a", Mirror: on}, "", on},
		{"to capture with a snaplen", &SetMirror{Name: "a", Mirror: capture}, "", capture},
		{"of nothing", &SetMirror{Name: "zzz", Mirror: on}, `service "zzz" does not exist`, capture},
		{"of no name", &SetMirror{Mirror: on}, `service "" does not exist`, capture},
		{"above 100%", &SetMirror{Name: "a", Mirror: &service.Mirror{Percent: service.MaxWeight + 1, To: "mirror0"}}, "spec.mirror.percent", capture},
		{"to nothing", &SetMirror{Name: "a", Mirror: &service.Mirror{Percent: 100}}, "spec.mirror.to", capture},
		{"snaplen too short", &SetMirror{Name: "a", Mirror: &service.Mirror{Percent: 100, To: "capture", Snaplen: 63}}, "spec.mirror.snaplen", capture},
		{"snaplen too long", &SetMirror{Name: "a", Mirror: &service.Mirror{Percent: 100, To: "capture", Snaplen: 1 << 20}}, "spec.mirror.snaplen", capture},
		{"off", &SetMirror{Name: "a"}, "", nil},
		{"off again", &SetMirror{Name: "a"}, "", nil},
		{"off of nothing", &SetMirror{Name: "zzz"}, "does not exist", nil},
	}
	for i, s := range steps {
		after := applyStep(t, f, uint64(i+2), s.name, s.cmd, s.want)
		got := after.Services["a"].Mirror
		if (got == nil) != (s.a == nil) || got != nil && *got != *s.a {
			t.Fatalf("%s: mirror of a %+v, want %+v", s.name, got, s.a)
		}
		if after.Services["b"].Mirror != nil {
			t.Fatalf("%s: b got a mirror", s.name)
		}
	}
	var notFound *NotFoundError
	if err := apply(t, f, 99, &SetMirror{Name: "zzz"}); !errors.As(err, &notFound) {
		t.Fatalf("mirror of nothing: %v, want a NotFoundError", err)
	}
	var conflict *ConflictError
	if err := apply(t, f, 100, &SetMirror{Name: "a", Mirror: &service.Mirror{Percent: 1}}); !errors.As(err, &conflict) {
		t.Fatalf("mirror to nothing: %v, want a ConflictError", err)
	}
}

// TestSetMirrorOwnsItsCopy: the state does not share the command's
// Mirror, so changing the command afterwards changes nothing.
func TestSetMirrorOwnsItsCopy(t *testing.T) {
	st := newState()
	st.Services["a"] = svc("a", "10.0.0.1", 0)
	m := &service.Mirror{Percent: 100, To: "capture"}
	if err := (&SetMirror{Name: "a", Mirror: m}).apply(&st); err != nil {
		t.Fatal(err)
	}
	m.Percent = 9999
	if got := st.Services["a"].Mirror.Percent; got != 100 {
		t.Fatalf("the state's mirror changed with the command's: %v", got)
	}
}

// TestSnapshotWithMirror: a mirror, snaplen included, survives a
// snapshot.
func TestSnapshotWithMirror(t *testing.T) {
	f := NewFSM(slog.New(slog.DiscardHandler))
	if err := apply(t, f, 1, &ApplyServices{Services: []service.Service{svc("a", "10.0.0.1", 0)}}); err != nil {
		t.Fatal(err)
	}
	if err := apply(t, f, 2, &SetMirror{Name: "a", Mirror: &service.Mirror{Percent: 25, To: "capture", Snaplen: 128}}); err != nil {
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
	st, _ := g.State()
	if m := st.Services["a"].Mirror; m == nil || *m != (service.Mirror{Percent: 25, To: "capture", Snaplen: 128}) {
		t.Fatalf("restored mirror %+v", m)
	}
}

// FuzzSetMirror: any SetMirror is applied or refused, never a panic, and
// a refused one changes nothing.
func FuzzSetMirror(f *testing.F) {
	f.Add("a", false, uint16(100), "capture", uint32(0))
	f.Add("a", false, uint16(10001), "mirror0", uint32(64))
	f.Add("zzz", true, uint16(0), "", uint32(0))
	f.Add("", false, uint16(0), "a/b", uint32(1<<31))
	f.Fuzz(func(t *testing.T, name string, off bool, percent uint16, to string, snaplen uint32) {
		fsm := NewFSM(slog.New(slog.DiscardHandler))
		if err := apply(t, fsm, 1, &ApplyServices{Services: []service.Service{svc("a", "10.0.0.1", 0)}}); err != nil {
			t.Fatal(err)
		}
		before, _ := fsm.State()
		cmd := &SetMirror{Name: name}
		if !off {
			cmd.Mirror = &service.Mirror{Percent: service.Weight(percent), To: to, Snaplen: snaplen}
		}
		data, err := Encode(cmd)
		if err != nil {
			t.Fatal(err)
		}
		res := fsm.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
		after, _ := fsm.State()
		if res != nil && !equalState(before, after) {
			t.Fatalf("%+v: refused (%v) but the state changed", cmd, res)
		}
		if res == nil && service.ValidateSet(after.ServiceList()) != nil {
			t.Fatalf("%+v: applied, and the state does not validate", cmd)
		}
	})
}
