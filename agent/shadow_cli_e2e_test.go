package agent_test

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestShadowCLI: `graylanectl capture --payload` records the stable
// pool's answers to 100 requests/s of /doc/N; `graylanectl shadow`, run
// in the client's namespace, replays them: to stable, ≥ 200 compared and
// none differing (the noise floor); to a canary that changes a field on
// 10 % of the paths, a tenth of them differing, all in the body. A
// headers-only capture is refused with the advice to use --payload.
func TestShadowCLI(t *testing.T) {
	e := setup(t, netlab.Config{}, "tc")
	var canary netlab.Faults
	canary.SetDiff(10)
	startRolloutServers(t, e.lab, &canary)
	if err := e.agent.Apply(e.ctx, []service.Service{rolloutService(e.lab, 0)}); err != nil {
		t.Fatal(err)
	}
	load := startDocLoad(e.ctx, e.lab, 100)
	defer load.stop()
	dir := t.TempDir()
	full, headers := filepath.Join(dir, "full.pcapng"), filepath.Join(dir, "headers.pcapng")
	server := "unix://" + e.agent.SocketPath()
	for _, c := range [][]string{
		{"capture", "web", "--percent", "100%", "--duration", "4s", "--payload", "-w", full},
		{"capture", "web", "--percent", "100%", "--duration", "1s", "-w", headers},
	} {
		if out, code := graylanectl(t, e.ctx, append([]string{"--server", server}, c...)...); code != 0 {
			t.Fatalf("graylanectl %v: exit %d:\n%s", c, code, out)
		}
	}
	bin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	shadow := func(args ...string) (string, int) {
		cmd := e.lab.Client.Command(e.ctx, bin, append([]string{"--server", server, "shadow", "web"}, args...)...)
		return exitCode(t, cmd)
	}
	type report struct {
		Compared, Differing int
		DifferingByKind     map[string]int
	}
	for _, to := range []string{"stable", "canary"} {
		out, code := shadow("--from", full, "--to", to, "-o", "json")
		var r report
		if code != 0 || json.Unmarshal([]byte(out), &r) != nil {
			t.Fatalf("shadow --to %s: exit %d:\n%s", to, code, out)
		}
		t.Logf("--to %s: %d compared, %d differing %v", to, r.Compared, r.Differing, r.DifferingByKind)
		if r.Compared < 200 {
			t.Errorf("--to %s: %d compared, want at least 200", to, r.Compared)
		}
		// Content differences are the claim; an answer that did not come
		// (kind error: a connection reset or timed out under make test's
		// parallel load, 4 of 400 seen once) is not one, but must stay
		// rare.
		k := r.DifferingByKind
		if k["error"]*50 > r.Compared {
			t.Errorf("--to %s: %d of %d replayed requests got no answer", to, k["error"], r.Compared)
		}
		switch share := float64(k["body"]) / float64(max(r.Compared, 1)); {
		case k["status"]+k["header"] != 0:
			t.Errorf("--to %s: statuses or headers differ: %v", to, k)
		case to == "stable" && k["body"] != 0:
			t.Errorf("stable against its own recording: %d bodies differ", k["body"])
		case to == "canary" && (share < 0.07 || share > 0.13):
			t.Errorf("the canary differs on 10 %% of paths: %d of %d bodies differ, %v", k["body"], r.Compared, k)
		}
	}
	if out, code := shadow("--from", headers); code == 0 || !strings.Contains(out, "--payload") {
		t.Errorf("shadow of a headers-only capture: exit %d:\n%s", code, out)
	}
}
