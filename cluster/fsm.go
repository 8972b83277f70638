package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"runtime/debug"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/graylane/graylane/pkg/service"
)

// FSM is the replicated state machine: the desired state, changed only by
// commands from the log. It is deterministic: the same log gives the same
// state, and the same results, on every node.
type FSM struct {
	log *slog.Logger

	mu      sync.RWMutex
	state   State
	index   uint64        // raft index of the last command applied
	skipped uint64        // entries skipped as unreadable
	changed chan struct{} // closed and replaced at every change
}

// NewFSM returns an FSM with an empty state.
func NewFSM(log *slog.Logger) *FSM {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &FSM{log: log, state: newState(), changed: make(chan struct{})}
}

// Apply applies one log entry. The result is nil or the error that made
// the command leave the state unchanged (a *ConflictError, a
// *NotFoundError, or a validation error naming the field).
//
// Apply never panics on an entry: the log is written by whoever holds a
// member's certificate, so an entry is input like any other. One this node
// cannot read (bytes that are no command, a type it does not know, a
// command whose apply fails unexpectedly) is logged, counted (Skipped) and
// skipped, the same on every node, as every node reads the same bytes.
// The leader refuses such commands before they reach the log (Check); an
// entry that gets there anyway was written around it. New command types
// carry IgnoreIfUnknown, or are used only once every member knows them,
// so an older node skipping one does not diverge.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	cmd, err := Decode(l.Data)
	if errors.Is(err, errUnknownIgnorable) {
		f.log.Warn("skipping a command of a newer version", "index", l.Index, "type", l.Data[0])
		f.advance(l.Index)
		return nil
	}
	if err != nil {
		f.skip(l.Index, err)
		return &InvalidError{Err: err}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next, err := f.try(cmd)
	if err != nil {
		// The refusal is recorded too: who tried what.
		audit(&f.state, &f.state, l.Index, cmd, err)
		f.index = l.Index
		return err
	}
	audit(&next, &f.state, l.Index, cmd, nil)
	f.state = next
	f.index = l.Index
	f.notify()
	return nil
}

// Check says whether cmd would change the state now, without changing it:
// the leader's test of a command before it enters the log.
func (f *FSM) Check(cmd Command) error {
	_, err := f.changes(cmd)
	return err
}

// changes is Check that also returns the services cmd would add or
// change, as they would be.
func (f *FSM) changes(cmd Command) ([]service.Service, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	next, err := f.try(cmd)
	if err != nil {
		return nil, err
	}
	var out []service.Service
	for _, name := range changedServices(&f.state, &next) {
		if s, ok := next.Services[name]; ok {
			out = append(out, s)
		}
	}
	return out, nil
}

// try applies cmd to a copy of the state and validates the result; f.mu
// is held. A panic in a command's apply (a bug the input found) is an
// error, not a crash: every node meets it on the same entry.
func (f *FSM) try(cmd Command) (next State, err error) {
	defer func() {
		if p := recover(); p != nil {
			f.log.Error("a command's apply failed: the entry changes nothing", "type", cmd.Type(), "panic", p, "stack", string(debug.Stack()))
			err = &InvalidError{Err: fmt.Errorf("command type %d cannot be applied: %v", cmd.Type(), p)}
		}
	}()
	next = f.state.clone()
	if err := cmd.apply(&next); err != nil {
		return State{}, err
	}
	if err := service.ValidateSet(next.ServiceList()); err != nil {
		return State{}, &ConflictError{Err: err}
	}
	if err := checkTenancy(&f.state, &next, commandCaller(cmd)); err != nil {
		return State{}, err
	}
	if err := checkCapacityFrom(&f.state, &next); err != nil {
		return State{}, err
	}
	return next, nil
}

// skip passes over an entry this node cannot read.
func (f *FSM) skip(index uint64, err error) {
	f.log.Error("skipping a raft log entry this agent cannot read: it changes nothing here; if it is of a newer version, upgrade this agent", "index", index, "err", err)
	f.mu.Lock()
	f.index = index
	f.skipped++
	f.mu.Unlock()
}

// Index is the raft index of the last entry applied.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index
}

// Skipped counts the log entries this node skipped as unreadable.
func (f *FSM) Skipped() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.skipped
}

func (f *FSM) advance(index uint64) {
	f.mu.Lock()
	f.index = index
	f.mu.Unlock()
}

// notify wakes every Changed waiter; f.mu is held.
func (f *FSM) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// State returns a copy of the state and the index it reflects.
func (f *FSM) State() (State, uint64) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.clone(), f.index
}

// Changed returns a channel closed at the next change of the state.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.changed
}

// snapshotData is what a snapshot holds.
type snapshotData struct {
	Version int    `json:"version"`
	Index   uint64 `json:"index"` // the last command the state includes
	State   State  `json:"state"`
}

const snapshotVersion = 1

// Snapshot captures the state for raft.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	st, index := f.State()
	return &fsmSnapshot{data: snapshotData{Version: snapshotVersion, Index: index, State: st}}, nil
}

// Restore replaces the state with a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var d snapshotData
	if err := json.NewDecoder(rc).Decode(&d); err != nil {
		return fmt.Errorf("restore snapshot: %w", err)
	}
	if d.Version != snapshotVersion {
		return fmt.Errorf("restore snapshot: version %d, this agent reads %d: upgrade it", d.Version, snapshotVersion)
	}
	st := newState()
	maps.Copy(st.Services, d.State.Services)
	maps.Copy(st.Releases, d.State.Releases)
	maps.Copy(st.Runs, d.State.Runs)
	if len(d.State.Revoked) > 0 {
		st.Revoked = maps.Clone(d.State.Revoked)
	}
	if len(d.State.Tenants) > 0 {
		st.Tenants = maps.Clone(d.State.Tenants)
	}
	st.Audit = d.State.Audit
	d.State = st
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = d.State
	f.index = d.Index
	f.notify()
	return nil
}

type fsmSnapshot struct{ data snapshotData }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.data); err != nil {
		sink.Cancel()
		return fmt.Errorf("write snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
