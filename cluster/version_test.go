package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/tenant"
)

// TestVersionGate: a command type under the gate commits when every
// member knows it, and is refused — taking no log entry — while a member
// cannot say it does; older types and ignorable ones are not gated.
func TestVersionGate(t *testing.T) {
	for _, tc := range []struct {
		t    CommandType
		want bool
	}{{CmdSetWeight, false}, {CmdRevoke | IgnoreIfUnknown, false}, {CmdApplyTenants, true}, {CmdDeleteTenant, true}} {
		if got := gated(tc.t); got != tc.want {
			t.Errorf("gated(%d) = %v, want %v", tc.t, got, tc.want)
		}
	}
	c := newTestCluster(t, 3)
	waitFor(t, "a leader", func() bool { return c.leader() >= 0 })
	l := c.leader()
	ctx := context.Background()
	if _, err := c.nodes[(l+1)%3].Apply(ctx, &ApplyTenants{Tenants: []tenant.Tenant{{Name: "a"}}}); err != nil {
		t.Fatalf("a gated command with every member up: %v", err)
	}
	down := (l + 2) % 3
	c.nodes[down].Close()
	c.nodes[down] = nil
	// Nothing else in flight (the last write's barrier) before counting.
	if err := c.nodes[l].raft.Barrier(5 * time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	last := c.nodes[l].raft.LastIndex()
	_, err := c.nodes[l].Apply(ctx, &ApplyTenants{Tenants: []tenant.Tenant{{Name: "b"}}})
	var conflict *ConflictError
	if !errors.As(err, &conflict) || !strings.Contains(err.Error(), "could not be asked") {
		t.Errorf("a gated command with a member down: %v", err)
	}
	if got := c.nodes[l].raft.LastIndex(); got != last {
		t.Errorf("the refusal took log entries (%d -> %d)", last, got)
	}
	if _, err := c.nodes[l].Apply(ctx, &SetWeight{Name: "nope"}); errors.As(err, &conflict) && strings.Contains(err.Error(), "every member") {
		t.Errorf("an older command type was gated: %v", err)
	}
}
