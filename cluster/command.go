package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/rollout"
	"github.com/graylane/graylane/pkg/service"
)

// CommandType identifies a command in the raft log: one byte, then the
// command's JSON. The numbers are append-only: a type is never reused or
// renumbered, so any node can replay any log.
type CommandType uint8

// IgnoreIfUnknown marks a command an older node may skip: set on commands
// added in a rolling upgrade whose effect an old node can do without. A
// command without it that a node does not know stops the node (better
// than diverging).
const IgnoreIfUnknown CommandType = 0x80

// The commands. Append only.
const (
	// CmdApplyServices creates or replaces a set of services at once.
	CmdApplyServices CommandType = 1
	// CmdDeleteService removes a service.
	CmdDeleteService CommandType = 2
	// CmdSetWeight sets a service's canary weight.
	CmdSetWeight CommandType = 3
	// CmdSetPin adds a pin or changes its pool.
	CmdSetPin CommandType = 4
	// CmdRemovePin removes a pin.
	CmdRemovePin CommandType = 5
	// CmdApply creates or replaces services and releases at once.
	CmdApply CommandType = 6
	// CmdDeleteRelease removes a release that is not running.
	CmdDeleteRelease CommandType = 7
	// CmdRollout records a decision about a running release, and the
	// weight it sets, in one entry.
	CmdRollout CommandType = 8
	// CmdSetMirror sets or stops the mirroring of a service's flows. It
	// has no ignore bit: a node that skipped it would hold another state.
	CmdSetMirror CommandType = 9
	// CmdRevoke revokes a removed node's certificates (with the ignore
	// bit: see Revoke).
	CmdRevoke CommandType = 10
	// CmdApplyTenants creates or replaces Tenants (admins only), and
	// CmdDeleteTenant removes one with no services left. No ignore bit:
	// a node that skipped them would judge tenants' writes otherwise.
	CmdApplyTenants CommandType = 11
	CmdDeleteTenant CommandType = 12
)

// Command is one change of the desired state.
type Command interface {
	Type() CommandType
	// apply changes st (a copy) or says why it cannot.
	apply(st *State) error
}

// ApplyServices creates or replaces Services, all or none.
type ApplyServices struct {
	Services []service.Service `json:"services"`
	Meta
}

// DeleteService removes the service Name.
type DeleteService struct {
	Name string `json:"name"`
	// Cascade deletes the service's releases (none running) with it.
	Cascade bool `json:"cascade,omitempty"`
	Meta
}

// SetWeight sets the canary weight of the service Name.
type SetWeight struct {
	Name   string         `json:"name"`
	Weight service.Weight `json:"weight"`
	Meta
}

// SetMirror sets the mirroring of the service Name: Mirror replaces
// spec.mirror, and nil stops mirroring.
type SetMirror struct {
	Name   string          `json:"name"`
	Mirror *service.Mirror `json:"mirror,omitempty"`
	Meta
}

// SetPin pins Prefix of the service Name to Pool.
type SetPin struct {
	Name   string       `json:"name"`
	Prefix netip.Prefix `json:"prefix"`
	Pool   service.Pool `json:"pool"`
	Meta
}

// RemovePin removes the pin of Prefix from the service Name.
type RemovePin struct {
	Name   string       `json:"name"`
	Prefix netip.Prefix `json:"prefix"`
	Meta
}

// Apply creates or replaces Services and Releases, all or none.
type Apply struct {
	Services []service.Service `json:"services,omitempty"`
	Releases []release.Release `json:"releases,omitempty"`
	Meta
}

// DeleteRelease removes the release Name.
type DeleteRelease struct {
	Name string `json:"name"`
	Meta
}

// Rollout replaces the run of a release by Run, if the stored run is still
// at Base (its Seq): a decision made on a state that has moved on since
// (by another leader, or a user) is refused, so no step is done twice.
// Weight, if set, becomes the service's canary weight in the same entry.
type Rollout struct {
	Base   uint64          `json:"base"`
	Run    rollout.Run     `json:"run"`
	Weight *service.Weight `json:"weight,omitempty"`
	// Swap makes the canary the new stable (a full promotion): the pools
	// trade backends and the weight goes to 0, so every new flow goes to
	// the promoted version, now the stable pool, and the old one waits in
	// the canary pool for the next release.
	Swap bool `json:"swap,omitempty"`
	// Meta says who asked, for a user's action (start, pause, abort…);
	// the controller's own decisions carry none.
	Meta
}

func (ApplyServices) Type() CommandType { return CmdApplyServices }
func (Apply) Type() CommandType         { return CmdApply }
func (DeleteRelease) Type() CommandType { return CmdDeleteRelease }
func (Rollout) Type() CommandType       { return CmdRollout }
func (DeleteService) Type() CommandType { return CmdDeleteService }
func (SetWeight) Type() CommandType     { return CmdSetWeight }
func (SetMirror) Type() CommandType     { return CmdSetMirror }
func (SetPin) Type() CommandType        { return CmdSetPin }
func (RemovePin) Type() CommandType     { return CmdRemovePin }

// decoders builds an empty command of each known type. Each type is
// registered once, here.
var decoders = map[CommandType]func() Command{
	CmdApplyServices: func() Command { return &ApplyServices{} },
	CmdDeleteService: func() Command { return &DeleteService{} },
	CmdSetWeight:     func() Command { return &SetWeight{} },
	CmdSetPin:        func() Command { return &SetPin{} },
	CmdRemovePin:     func() Command { return &RemovePin{} },
	CmdApply:         func() Command { return &Apply{} },
	CmdDeleteRelease: func() Command { return &DeleteRelease{} },
	CmdRollout:       func() Command { return &Rollout{} },
	CmdSetMirror:     func() Command { return &SetMirror{} },
	CmdRevoke:        func() Command { return &Revoke{} },
	CmdApplyTenants:  func() Command { return &ApplyTenants{} },
	CmdDeleteTenant:  func() Command { return &DeleteTenant{} },
}

// Encode turns a command into a log entry.
func Encode(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode command %d: %w", c.Type(), err)
	}
	return append([]byte{byte(c.Type())}, body...), nil
}

// errUnknownIgnorable says an entry is of a newer, skippable type.
var errUnknownIgnorable = errors.New("unknown command marked ignore-if-unknown")

// Decode turns a log entry back into a command.
func Decode(entry []byte) (Command, error) {
	if len(entry) == 0 {
		return nil, errors.New("empty command")
	}
	t := CommandType(entry[0])
	mk, ok := decoders[t&^IgnoreIfUnknown]
	if !ok {
		if t&IgnoreIfUnknown != 0 {
			return nil, errUnknownIgnorable
		}
		return nil, fmt.Errorf("unknown command type %d: this agent is older than the cluster's log; upgrade it", t)
	}
	c := mk()
	if err := json.Unmarshal(entry[1:], c); err != nil {
		return nil, fmt.Errorf("decode command type %d: %w", t, err)
	}
	return c, nil
}

// ConflictError is a command that is valid on its own but not against the
// state it met (a service that does not exist, a pin to an empty pool).
type ConflictError struct{ Err error }

func (e *ConflictError) Error() string { return e.Err.Error() }
func (e *ConflictError) Unwrap() error { return e.Err }

// InvalidError is an entry that is no valid command: bytes that do not
// decode, a type this node does not know, content no state could take.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }
func (e *InvalidError) Unwrap() error { return e.Err }

// NotFoundError names a service or pin the state does not have.
type NotFoundError struct{ What string }

func (e *NotFoundError) Error() string { return e.What + " does not exist" }

func (c *ApplyServices) apply(st *State) error {
	for _, s := range c.Services {
		if s.Tenant == "" {
			s.Tenant = service.DefaultTenant
		}
		st.Services[s.Name] = s
	}
	return nil
}

func (c *DeleteService) apply(st *State) error {
	if _, ok := st.Services[c.Name]; !ok {
		return &NotFoundError{What: fmt.Sprintf("service %q", c.Name)}
	}
	for _, run := range st.Runs {
		if run.Service == c.Name && run.Phase.Active() {
			return &ConflictError{Err: fmt.Errorf("service %q has the running release %q: abort or promote it first", c.Name, run.Release)}
		}
	}
	delete(st.Services, c.Name)
	if c.Cascade {
		for name, r := range st.Releases {
			if r.Service == c.Name {
				delete(st.Releases, name)
				delete(st.Runs, name)
			}
		}
	}
	return nil
}

func (c *SetWeight) apply(st *State) error {
	s, ok := st.Services[c.Name]
	if !ok {
		return &NotFoundError{What: fmt.Sprintf("service %q", c.Name)}
	}
	s.CanaryWeight = c.Weight
	st.Services[c.Name] = s
	return nil
}

func (c *SetMirror) apply(st *State) error {
	s, ok := st.Services[c.Name]
	if !ok {
		return &NotFoundError{What: fmt.Sprintf("service %q", c.Name)}
	}
	s.Mirror = nil
	if c.Mirror != nil {
		m := *c.Mirror // the state keeps its own copy
		s.Mirror = &m
	}
	st.Services[c.Name] = s
	return nil
}

func (c *SetPin) apply(st *State) error {
	s, ok := st.Services[c.Name]
	if !ok {
		return &NotFoundError{What: fmt.Sprintf("service %q", c.Name)}
	}
	p := c.Prefix.Masked()
	for i := range s.Pins {
		if s.Pins[i].Prefix == p {
			s.Pins[i].Pool = c.Pool
			st.Services[c.Name] = s
			return nil
		}
	}
	s.Pins = append(s.Pins, service.Pin{Prefix: p, Pool: c.Pool})
	st.Services[c.Name] = s
	return nil
}

func (c *RemovePin) apply(st *State) error {
	s, ok := st.Services[c.Name]
	if !ok {
		return &NotFoundError{What: fmt.Sprintf("service %q", c.Name)}
	}
	p := c.Prefix.Masked()
	for i := range s.Pins {
		if s.Pins[i].Prefix == p {
			s.Pins = append(s.Pins[:i:i], s.Pins[i+1:]...)
			st.Services[c.Name] = s
			return nil
		}
	}
	return &NotFoundError{What: fmt.Sprintf("pin %s of service %q", p, c.Name)}
}

func (c *Apply) apply(st *State) error {
	if err := (&ApplyServices{Services: c.Services}).apply(st); err != nil {
		return err
	}
	for _, r := range c.Releases {
		if run, ok := st.Runs[r.Name]; ok && run.Phase.Active() {
			return &ConflictError{Err: fmt.Errorf("release %q is running: abort it (or let it finish) before changing it", r.Name)}
		}
		if err := r.Validate(); err != nil {
			return fmt.Errorf("release %q: %w", r.Name, err)
		}
		svc, ok := st.Services[r.Service]
		if !ok {
			return &ConflictError{Err: fmt.Errorf("release %q: spec.service %q does not exist: apply the service first, or in the same file", r.Name, r.Service)}
		}
		// The kernel counts at most MaxLatencyThresholds per service: the
		// service's own and the breaker's two.
		th := map[time.Duration]bool{r.Analysis.Breaker.OpenP99Above: true, r.Analysis.Breaker.CloseP99AtMost: true}
		for _, t := range svc.LatencyThresholds {
			th[t] = true
		}
		if len(th) > service.MaxLatencyThresholds {
			return &ConflictError{Err: fmt.Errorf("release %q: service %q has %d latency thresholds and the breaker needs 2 more; the kernel counts at most %d: remove some from spec.latencyThresholds",
				r.Name, r.Service, len(svc.LatencyThresholds), service.MaxLatencyThresholds)}
		}
		st.Releases[r.Name] = r
		delete(st.Runs, r.Name) // a finished run of the old definition
	}
	return nil
}

func (c *DeleteRelease) apply(st *State) error {
	if _, ok := st.Releases[c.Name]; !ok {
		return &NotFoundError{What: fmt.Sprintf("release %q", c.Name)}
	}
	if run, ok := st.Runs[c.Name]; ok && run.Phase.Active() {
		return &ConflictError{Err: fmt.Errorf("release %q is running: abort it first", c.Name)}
	}
	delete(st.Releases, c.Name)
	delete(st.Runs, c.Name)
	return nil
}

func (c *Rollout) apply(st *State) error {
	r, ok := st.Releases[c.Run.Release]
	if !ok {
		return &NotFoundError{What: fmt.Sprintf("release %q", c.Run.Release)}
	}
	if c.Run.Service != r.Service {
		return &ConflictError{Err: fmt.Errorf("release %q steers service %q, not %q", r.Name, r.Service, c.Run.Service)}
	}
	if prev := st.Runs[r.Name]; prev.Seq != c.Base {
		return &ConflictError{Err: fmt.Errorf("release %q changed meanwhile (at %d, this decision was made at %d): look again", r.Name, prev.Seq, c.Base)}
	}
	run := c.Run
	run.Seq = c.Base + 1
	st.Runs[r.Name] = run
	if c.Swap {
		svc := st.Services[r.Service]
		svc.Stable, svc.Canary, svc.CanaryWeight = svc.Canary, svc.Stable, 0
		st.Services[r.Service] = svc
		return nil
	}
	if c.Weight != nil {
		return (&SetWeight{Name: r.Service, Weight: *c.Weight}).apply(st)
	}
	return nil
}
