package agent_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
)

// TestShadowGate: a release whose step verifies with a shadow gate —
// capture 4 s of the service's stable traffic on every node, replay it to
// the canary, allow 0.1 % differing — passes (and is promoted) when the
// canary answers like stable, and pauses, naming what differed, when the
// canary changes a JSON field on 10 % of the paths.
func TestShadowGate(t *testing.T) {
	for _, tc := range []struct {
		name      string
		diffEvery int64
	}{{"identical", 0}, {"differing", 10}} {
		t.Run(tc.name, func(t *testing.T) { testShadowGate(t, tc.diffEvery) })
	}
}

func testShadowGate(t *testing.T, diffEvery int64) {
	e := setup(t, netlab.Config{}, "tc")
	var canary netlab.Faults
	canary.SetDiff(diffEvery)
	startRolloutServers(t, e.lab, &canary)
	load := startDocLoad(e.ctx, e.lab, 100)
	defer load.stop()
	steps := `    - setWeight: 10
      verify:
        - shadow: {from: capture, duration: 4s, percent: 100%, maxDiffering: 0.1%}
    - setWeight: 100`
	if err := e.agent.ApplyRaw(e.ctx, []byte(rolloutManifests(e.lab, steps, 0))); err != nil {
		t.Fatal(err)
	}
	c := e.agent.Client()
	if _, err := c.ReleaseAction(e.ctx, "web-v2", "start", api.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	var r api.Release
	for time.Now().Before(deadline) {
		var err error
		if r, err = c.Release(e.ctx, "web-v2"); err != nil {
			t.Fatal(err)
		}
		if r.Phase == "promoted" || r.Phase == "paused" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("release %s: %s (%s); load: %d ok, %d failed", r.Name, r.Phase, r.Reason, load.ok.Load(), load.failed.Load())
	switch {
	case diffEvery == 0 && r.Phase != "promoted":
		t.Errorf("the canary answers like stable, but the release is %s: %s", r.Phase, r.Reason)
	case diffEvery > 0 && (r.Phase != "paused" || !strings.Contains(r.Reason, "shadow capture failed") || !strings.Contains(r.Reason, "body differs")):
		t.Errorf("the canary differs on 1/%d of paths, but the release is %s: %s", diffEvery, r.Phase, r.Reason)
	}
	mf := scrape(t, e.lab)
	compared, differing := mf["graylane_shadow_compared_total"], mf["graylane_shadow_differing_total"]
	if compared == nil || differing == nil || compared.Metric[0].GetCounter().GetValue() == 0 ||
		(diffEvery > 0) != (differing.Metric[0].GetCounter().GetValue() > 0) {
		t.Errorf("shadow metrics: compared %v, differing %v", compared, differing)
	}
}

// docLoad GETs /doc/0../doc/99 in turn through the VIP, one connection
// each, at about rate a second: the same answers from every backend.
type docLoad struct {
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	ok, failed atomic.Int64
}

func startDocLoad(ctx context.Context, lab *netlab.Lab, rate int) *docLoad {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	l := &docLoad{cancel: cancel}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return lab.Client.DialTCP(ctx, netip.Addr{}, netip.MustParseAddrPort(addr))
		},
	}}
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			resp, err := client.Get(fmt.Sprintf("http://%s/doc/%d", netip.AddrPortFrom(netlab.VIP4, rolloutPort), i%100))
			if err != nil {
				l.failed.Add(1)
				continue
			}
			resp.Body.Close()
			l.ok.Add(1)
		}
	})
	return l
}

func (l *docLoad) stop() { l.cancel(); l.wg.Wait() }
