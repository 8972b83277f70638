package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
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
	changed chan struct{} // closed and replaced at every change
}

// NewFSM returns an FSM with an empty state.
func NewFSM(log *slog.Logger) *FSM {
	return &FSM{log: log, state: newState(), changed: make(chan struct{})}
}

// Apply applies one log entry. The result is nil or the error that made
// the command leave the state unchanged (a *ConflictError, a
// *NotFoundError, or a validation error naming the field).
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
		// A command this node cannot read would make it diverge from the
		// others: stop rather than guess (raft will replay it after an
		// upgrade).
		panic(fmt.Sprintf("raft log entry %d: %v", l.Index, err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.state.clone()
	if err := cmd.apply(&next); err != nil {
		f.index = l.Index
		return err
	}
	if err := service.ValidateSet(next.ServiceList()); err != nil {
		f.index = l.Index
		return &ConflictError{Err: err}
	}
	f.state = next
	f.index = l.Index
	f.notify()
	return nil
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
