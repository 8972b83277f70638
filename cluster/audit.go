package cluster

import (
	"fmt"
	"strings"
	"time"
)

// Who changed what. Every write command carries Meta: the tenant it is
// judged as (Caller) and, when it came through the API, who sent it (Who:
// the token's name and tenant, the peer's address, the time). The FSM
// keeps the last MaxAudit entries in the replicated state — applied and
// refused alike — so every member can tell, after any failover, who
// changed what; graylanectl audit lists them.

// MaxAudit bounds the audit entries the state keeps (the oldest go).
const MaxAudit = 1000

// Meta is what a write command says about its sender. Embedded: its
// fields are the command's own on the wire.
type Meta struct {
	// Caller is the tenant the write is judged as ("" for an admin or the
	// cluster itself).
	Caller string `json:"caller,omitempty"`
	// Who sent it, when it came through the API.
	Who *Who `json:"who,omitempty"`
}

// Who sent a write through the API.
type Who struct {
	Token  string    `json:"token"`            // the token's name ("local": the unix socket)
	Tenant string    `json:"tenant,omitempty"` // "" for an admin
	Peer   string    `json:"peer,omitempty"`   // the client's address
	At     time.Time `json:"at"`               // when the API took it
}

// SetCaller marks the command as a tenant's (CallerSetter).
func (m *Meta) SetCaller(tenant string) { m.Caller = tenant }

// SetWho records who sent the command.
func (m *Meta) SetWho(w Who) { m.Who = &w }

func (m *Meta) caller() string { return m.Caller }
func (m *Meta) sender() *Who   { return m.Who }

// WhoSetter is a command that records its sender.
type WhoSetter interface {
	SetWho(Who)
}

// AuditEntry is one write the log committed.
type AuditEntry struct {
	Index uint64 `json:"index"`
	// Who sent it; nil for the cluster's own (a rollout's decision, a
	// revocation).
	Who     *Who   `json:"who,omitempty"`
	Command string `json:"command"` // "set-weight web 25%"
	// Tenant is the tenant whose things it touched ("" for admin-wide
	// ones): a tenant's token sees its own tenant's entries.
	Tenant string `json:"tenant,omitempty"`
	// Result is "" when applied, else why the state refused it.
	Result string `json:"result,omitempty"`
}

// audit appends an entry for cmd, committed at index with result err, to
// st's audit log, keeping the last MaxAudit; prev is the state cmd met
// (whose services name the tenant a deletion touched).
func audit(st, prev *State, index uint64, cmd Command, err error) {
	tenant := touchedTenant(prev, cmd)
	if tenant == "" {
		tenant = touchedTenant(st, cmd)
	}
	e := AuditEntry{Index: index, Command: describe(cmd), Tenant: tenant}
	if s, ok := cmd.(interface{ sender() *Who }); ok {
		e.Who = s.sender()
	}
	if err != nil {
		e.Result = err.Error()
	}
	st.Audit = append(st.Audit, e)
	if len(st.Audit) > MaxAudit {
		st.Audit = append([]AuditEntry(nil), st.Audit[len(st.Audit)-MaxAudit:]...)
	}
}

// touchedTenant is the tenant of what cmd names: the caller's, or the
// named service's owner.
func touchedTenant(st *State, cmd Command) string {
	if c := commandCaller(cmd); c != "" {
		return c
	}
	var name string
	switch c := cmd.(type) {
	case *SetWeight:
		name = c.Name
	case *SetMirror:
		name = c.Name
	case *SetPin:
		name = c.Name
	case *RemovePin:
		name = c.Name
	case *DeleteService:
		name = c.Name
	case *Rollout:
		name = c.Run.Service
	case *ApplyServices:
		if len(c.Services) == 1 {
			return c.Services[0].TenantName()
		}
	}
	if s, ok := st.Services[name]; ok {
		return s.TenantName()
	}
	return ""
}

// describe says in a few words what a command does.
func describe(cmd Command) string {
	switch c := cmd.(type) {
	case *ApplyServices:
		return "apply " + names(len(c.Services), func(i int) string { return "service " + c.Services[i].Name })
	case *Apply:
		parts := []string{}
		for _, s := range c.Services {
			parts = append(parts, "service "+s.Name)
		}
		for _, r := range c.Releases {
			parts = append(parts, "release "+r.Name)
		}
		return "apply " + strings.Join(parts, ", ")
	case *DeleteService:
		if c.Cascade {
			return "delete service " + c.Name + " and its releases"
		}
		return "delete service " + c.Name
	case *SetWeight:
		return fmt.Sprintf("set-weight %s %s", c.Name, c.Weight)
	case *SetMirror:
		if c.Mirror == nil {
			return "mirror " + c.Name + " off"
		}
		return fmt.Sprintf("mirror %s %s to %s", c.Name, c.Mirror.Percent, c.Mirror.To)
	case *SetPin:
		return fmt.Sprintf("pin %s %s to %s", c.Name, c.Prefix, c.Pool)
	case *RemovePin:
		return fmt.Sprintf("unpin %s %s", c.Name, c.Prefix)
	case *DeleteRelease:
		return "delete release " + c.Name
	case *Rollout:
		return fmt.Sprintf("rollout %s: %s", c.Run.Release, c.Run.Phase)
	case *ApplyTenants:
		return "apply " + names(len(c.Tenants), func(i int) string { return "tenant " + c.Tenants[i].Name })
	case *DeleteTenant:
		return "delete tenant " + c.Name
	case *Revoke:
		return fmt.Sprintf("revoke %d certificate(s) of removed node %s", len(c.Fingerprints), c.Node)
	}
	return fmt.Sprintf("command type %d", cmd.Type())
}

func names(n int, name func(int) string) string {
	parts := make([]string, n)
	for i := range n {
		parts[i] = name(i)
	}
	return strings.Join(parts, ", ")
}
