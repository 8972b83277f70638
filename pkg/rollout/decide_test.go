package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/release"
	"github.com/graylane/graylane/pkg/service"
)

func weight(w service.Weight) *service.Weight { return &w }

// contract is the release of the contract: 5 → (pause 300s) → 15
// (gates) → setRate → 100.
func contract() release.Release {
	return release.Release{Name: "auth-v2", Service: "auth", Steps: []release.Step{
		{SetWeight: weight(500), Pause: &release.Pause{Duration: 300 * time.Second}},
		{SetWeight: weight(1500), Verify: []release.Gate{{TCP: &release.TCPGate{}}}},
		{SetRate: 500},
		{SetWeight: weight(10000)},
	}}
}

// TestWalk: a healthy release walks its steps in order, each once, the
// pause and the gates holding it where they should, and is promoted.
func TestWalk(t *testing.T) {
	r := contract()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	d, err := Start(r, 0, t0)
	if err != nil {
		t.Fatal(err)
	}
	run := d.Run
	if d.Weight == nil || *d.Weight != 500 || run.Step != 0 || !run.PauseUntil.Equal(t0.Add(300*time.Second)) {
		t.Fatalf("start: %+v weight %v", run, d.Weight)
	}
	if d, gates := Next(run, r, t0.Add(299*time.Second)); d != nil || gates {
		t.Fatalf("advanced inside the pause: %+v %v", d, gates)
	}
	d2, gates := Next(run, r, t0.Add(300*time.Second))
	if d2 == nil || gates || d2.Run.Step != 1 || *d2.Weight != 1500 {
		t.Fatalf("after the pause: %+v %v", d2, gates)
	}
	run = d2.Run
	t1 := t0.Add(300 * time.Second)
	if d, gates := Next(run, r, t1); d != nil || !gates {
		t.Fatalf("step 2 did not ask for its gates: %+v %v", d, gates)
	}
	run = Verified(run, []GateResult{{Name: "tcp", Pass: true, Detail: "3 backends accept"}}, t1).Run
	d3, _ := Next(run, r, t1)
	if d3 == nil || d3.Run.Step != 2 || d3.Weight != nil || d3.Run.StepWeight != 1500 || d3.Run.Rate != 500 {
		t.Fatalf("setRate step: %+v", d3)
	}
	run = d3.Run
	d4, _ := Next(run, r, t1)
	if d4 == nil || d4.Run.Step != 3 || *d4.Weight != 10000 || d4.Run.Rate != 0 {
		t.Fatalf("last step: %+v", d4)
	}
	run = d4.Run
	d5, _ := Next(run, r, t1)
	if d5 == nil || d5.Run.Phase != Promoted || d5.Weight != nil {
		t.Fatalf("promotion: %+v", d5)
	}
	if d, _ := Next(d5.Run, r, t1); d != nil {
		t.Fatalf("a promoted release moved: %+v", d)
	}
	var kinds []string
	for _, e := range d5.Run.History {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, " "); got != "start step step gate step step promote" {
		t.Errorf("history %q", got)
	}
}

// TestGateFailurePauses: a failing gate pauses the release with the reason;
// resume runs the gates again.
func TestGateFailurePauses(t *testing.T) {
	r := contract()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	d, _ := Start(r, 0, t0)
	next, _ := Next(d.Run, r, t0.Add(time.Hour))
	run := Verified(next.Run, []GateResult{{Name: "http", Pass: false, Detail: ".db.status is DOWN, want UP", Output: "body"}}, t0)
	if run.Run.Phase != Paused || !strings.Contains(run.Run.Reason, ".db.status is DOWN") || run.Run.Verified {
		t.Fatalf("after a failed gate: %+v", run.Run)
	}
	if d, gates := Next(run.Run, r, t0.Add(2*time.Hour)); d != nil || gates {
		t.Fatal("a paused release moved")
	}
	res, err := Resume(run.Run, t0, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if _, gates := Next(res.Run, r, t0); !gates {
		t.Fatal("resume did not run the gates again")
	}
}

// TestPauseKeepsRemaining: a hand pause in a timed pause keeps the time
// left; resume gives it back; an indefinite pause waits for resume.
func TestPauseKeepsRemaining(t *testing.T) {
	r := contract()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	d, _ := Start(r, 0, t0)
	p, err := Pause(d.Run, t0.Add(100*time.Second), "ops")
	if err != nil || p.Run.Remaining != 200*time.Second {
		t.Fatalf("pause: %+v %v", p.Run, err)
	}
	if _, err := Pause(p.Run, t0, "ops"); err == nil {
		t.Fatal("paused twice")
	}
	res, _ := Resume(p.Run, t0.Add(time.Hour), "ops")
	if !res.Run.PauseUntil.Equal(t0.Add(time.Hour + 200*time.Second)) {
		t.Fatalf("resume: pause until %v", res.Run.PauseUntil)
	}
	hold := release.Release{Name: "h", Service: "s", Steps: []release.Step{{SetWeight: weight(100), Pause: &release.Pause{}}, {SetWeight: weight(200)}}}
	d, _ = Start(hold, 0, t0)
	if n, _ := Next(d.Run, hold, t0.Add(24*time.Hour)); n != nil {
		t.Fatal("an indefinite pause ended by itself")
	}
	res, err = Resume(d.Run, t0, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := Next(res.Run, hold, t0); n == nil || n.Run.Step != 1 {
		t.Fatalf("after resume: %+v", n)
	}
	if _, err := Resume(res.Run, t0, "ops"); err == nil {
		t.Fatal("resumed a release that was not held")
	}
}

// TestPromoteAbort: promote sets 100 %, abort 0; neither works twice.
func TestPromoteAbort(t *testing.T) {
	r := contract()
	t0 := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	d, _ := Start(r, 0, t0)
	p, err := Promote(d.Run, t0, "ops")
	if err != nil || *p.Weight != Full || p.Run.Phase != Promoted {
		t.Fatalf("promote: %+v %v", p, err)
	}
	if _, err := Abort(p.Run, t0, "ops"); err == nil {
		t.Fatal("aborted a promoted release")
	}
	a, err := Abort(d.Run, t0, "ops")
	if err != nil || *a.Weight != 0 || a.Run.Phase != Aborted {
		t.Fatalf("abort: %+v %v", a, err)
	}
	if _, err := Promote(a.Run, t0, "ops"); err == nil {
		t.Fatal("promoted an aborted release")
	}
}

// TestHistoryBounded: the history keeps the newest MaxHistory events.
func TestHistoryBounded(t *testing.T) {
	var run Run
	for i := range MaxHistory + 10 {
		run.Record(Event{Step: i})
	}
	if len(run.History) != MaxHistory || run.History[0].Step != 10 {
		t.Fatalf("history: %d events, first step %d", len(run.History), run.History[0].Step)
	}
}
