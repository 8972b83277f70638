package window

import (
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/datapath"
)

func snap(node string, id uint32, flows, responses, slow, timeouts uint64, th time.Duration) Snapshot {
	var p Pool
	p.Flows = flows
	p.Response.Counts[100] = responses
	p.Thresholds[0] = th
	p.Slow[0] = slow
	p.Errors[datapath.ErrTimeout] = timeouts
	p.SlowKnown = true
	return Snapshot{Node: node, Services: map[string][2]Pool{"web": {{}, p}}, ids: map[string]uint32{"web": id}}
}

func TestSinceAndMerge(t *testing.T) {
	a0 := snap("a", 1, 10, 100, 1, 0, time.Second)
	a1 := snap("a", 1, 25, 300, 5, 2, time.Second)
	b0 := snap("b", 7, 0, 0, 0, 0, time.Second)
	b1 := snap("b", 7, 5, 100, 3, 1, time.Second)
	wa, wb := a1.Since(a0), b1.Since(b0)
	if c := wa.Services["web"][1]; c.Flows != 15 || c.Responses() != 200 || c.Slow[0] != 4 || c.Errors[datapath.ErrTimeout] != 2 {
		t.Fatalf("window of a: %+v", c)
	}
	m := Merge(wa, wb)["web"][1]
	if m.Responses() != 300 || m.Slow[0] != 7 || !m.SlowKnown {
		t.Fatalf("merged: responses %d slow %d known %v", m.Responses(), m.Slow[0], m.SlowKnown)
	}
	if got := m.SlowShare(0); got != 7.0/300 {
		t.Fatalf("slow share %v", got)
	}
	// A threshold change inside the window makes Slow unknown.
	a2 := snap("a", 1, 30, 400, 6, 2, 2*time.Second)
	if w := a2.Since(a1).Services["web"][1]; w.SlowKnown || w.SlowShare(0) != 0 {
		t.Fatal("a window across a threshold change claims to know Slow")
	}
	// A re-created service (new id) counts from zero.
	a3 := snap("a", 9, 3, 30, 0, 0, time.Second)
	if w := a3.Since(a2).Services["web"][1]; w.Responses() != 30 {
		t.Fatalf("re-created service: %d responses", w.Responses())
	}
}
