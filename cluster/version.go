package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// A version gate for new command types. A command type without the
// ignore bit changes the state in a way every member must follow; a member
// that does not know it would skip it (or, before this version, stop). So
// the leader commits such a type — from CmdApplyTenants on — only when
// every member says, through /cluster/level, that it knows it. A member
// that cannot be asked (down, cut off, or older than the gate itself: it
// answers 404) blocks the command until it is back, upgraded or removed.

// CommandLevel is the newest command type this agent knows.
const CommandLevel = CmdDeleteTenant

// firstGated is the first command type the gate guards: the older ones
// every member of a cluster that has this gate knows.
const firstGated = CmdApplyTenants

// levelWait bounds each member's answer.
const levelWait = 2 * time.Second

type levelResponse struct {
	Node  string `json:"node"`
	Level uint8  `json:"level"`
}

// rpcLevel says which command types this node knows.
func (n *Node) rpcLevel(context.Context, []byte) (any, error) {
	return levelResponse{Node: n.cfg.Node, Level: uint8(CommandLevel)}, nil
}

// gated says whether the leader must ask the members before committing a
// command of type t.
func gated(t CommandType) bool {
	return t&IgnoreIfUnknown == 0 && t >= firstGated
}

// checkLevel refuses a gated command that a member does not (or may not)
// know.
func (n *Node) checkLevel(cmd Command) error {
	t := cmd.Type()
	if !gated(t) || n.hc == nil {
		return nil
	}
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	var mu sync.Mutex
	var behind []string
	var wg sync.WaitGroup
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == n.cfg.Node {
			continue
		}
		wg.Go(func() {
			if why := n.memberLevel(s, t); why != "" {
				mu.Lock()
				behind = append(behind, why)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(behind) == 0 {
		return nil
	}
	sort.Strings(behind)
	return &ConflictError{Err: fmt.Errorf("%s needs every member to know command type %d, and %v: upgrade or bring them back first, or remove them (graylanectl members remove NODE)",
		describe(cmd), t, behind)}
}

// memberLevel is "" when member s knows command type t, else why not.
func (n *Node) memberLevel(s raft.Server, t CommandType) string {
	ctx, cancel := context.WithTimeout(context.Background(), levelWait)
	defer cancel()
	var r levelResponse
	err := n.call(ctx, string(s.Address), "/cluster/level", struct{}{}, &r)
	var re *rpcError
	switch {
	case err == nil && CommandType(r.Level) >= t:
		return ""
	case err == nil:
		return fmt.Sprintf("%s knows types up to %d", s.ID, r.Level)
	case errors.As(err, &re) && re.Status == http.StatusNotFound:
		return fmt.Sprintf("%s runs an agent older than the version gate", s.ID)
	default:
		return fmt.Sprintf("%s could not be asked (%v)", s.ID, err)
	}
}
