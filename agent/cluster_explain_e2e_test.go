package agent_test

import (
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/pki"
	"github.com/graylane/graylane/pkg/service"
)

// TestClusterExplain: graylanectl in g1's namespace asks gw's HTTPS API
// to explain a client of a service of tenant b. The client holds a live
// connection, steered by gw (the lab's traffic goes through gw): gw's
// answer lists it; --node g1 is g1's answer, fetched through gw: node g1,
// the same decision (one state, one Maglev), and no live flow (g1's flow
// table is its own). A tenant-a token is refused on gw (exit 1, no
// answer) for --node g1 as for gw; an unknown node is refused naming the
// members; a member that is down is reported as not answering.
func TestClusterExplain(t *testing.T) {
	const admin, teamA = "admin-0123456789abcdef0123456789", "team-a-0123456789abcdef012345678"
	tr := newTrio(t, labagent.Cluster{}, map[string]string{admin: "*", teamA: "a"})
	s := keyedByClient(tr.lab, "web", 80, netlab.EchoPort, 500)
	s.Tenant = "b"
	leader := tr.waitLeader(t, 0, 3)
	if err := tr.agents[leader].Apply(tr.ctx, []service.Service{s}); err != nil {
		t.Fatal(err)
	}
	tr.waitKernels(t, s, 0, 1, 2)
	for _, h := range tr.lab.Backends() {
		if _, err := h.StartServers(tr.ctx); err != nil {
			t.Fatal(err)
		}
	}
	c, err := tr.lab.Client.DialTCP(tr.ctx, netip.Addr{}, netip.AddrPortFrom(s.VIP, s.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	greeting := make([]byte, 3)
	if _, err := io.ReadFull(c, greeting); err != nil {
		t.Fatalf("the live connection's greeting: %v", err)
	}
	client := tr.lab.Client.Addr4.String()

	run := ctlOnG1(t, tr)
	here := explainJSON(t, run, admin, "explain", "web", "--client", client)
	there := explainJSON(t, run, admin, "explain", "web", "--client", client, "--node", "g1")
	if here.Node != "gw" || here.LiveFlowsTotal != 1 || backendName(t, tr.lab, here.LiveFlows[0].Backend) != strings.TrimSpace(string(greeting)) {
		t.Fatalf("gw's answer: %+v; want node gw and the live flow answered by %q", here, greeting)
	}
	if there.Node != "g1" || there.LiveFlowsTotal != 0 || len(there.LiveFlows) != 0 {
		t.Fatalf("--node g1: %+v; want node g1 with no live flow", there)
	}
	if there.Pool != here.Pool || there.Bucket != here.Bucket || there.Weight != 500 || there.Backend != here.Backend {
		t.Fatalf("--node g1 decides %s %d/%d %s; gw %s %d/%d %s: one state, one decision",
			there.Pool, there.Bucket, there.Weight, there.Backend, here.Pool, here.Bucket, here.Weight, here.Backend)
	}
	t.Logf("client %s: gw and g1 both say %s by %s (bucket %d), backend %s; live flows gw %d, g1 %d",
		client, here.Pool, here.Reason, here.Bucket, here.Backend, here.LiveFlowsTotal, there.LiveFlowsTotal)

	checkExplainRefused(t, run, teamA, client, nil, `"web"`)
	for _, c := range []struct {
		token string
		args  []string
		want  []string
	}{
		{teamA, []string{"--node", "g1"}, []string{`"web"`}},
		{admin, []string{"--node", "g9"}, []string{`node "g9" is not a member of the cluster`, "members: g1, g2, gw"}},
	} {
		checkExplainRefused(t, run, c.token, client, c.args, c.want...)
	}
	tr.agents[2].Kill()
	checkExplainRefused(t, run, admin, client, []string{"--node", "g2"}, "node g2 (", "did not answer")
}

// ctlOnG1 returns what runs graylanectl in g1's namespace against gw's
// HTTPS API with a token.
func ctlOnG1(t *testing.T, tr *trio) func(token string, args ...string) (string, int) {
	t.Helper()
	bin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	server := "https://" + netip.AddrPortFrom(netlab.GatewayBackend4, labagent.APIPort).String()
	ca := pki.LabFiles(tr.certs, "gw").CA
	return func(token string, args ...string) (string, int) {
		cmd := tr.hosts[1].Command(tr.ctx, bin, append([]string{"--server", server, "--ca", ca}, args...)...)
		cmd.Env = append(os.Environ(), "GRAYLANE_TOKEN="+token)
		return exitCode(t, cmd)
	}
}

// explainJSON runs graylanectl explain ARGS -o json and reads its answer.
func explainJSON(t *testing.T, run func(string, ...string) (string, int), token string, args ...string) api.Explanation {
	t.Helper()
	out, code := run(token, append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("graylanectl %s: exit %d: %s", strings.Join(args, " "), code, out)
	}
	var ex api.Explanation
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		t.Fatalf("graylanectl %s: %v in %s", strings.Join(args, " "), err, out)
	}
	return ex
}

// checkExplainRefused: graylanectl explain web --client client ARGS exits
// 1 with a message holding each of want.
func checkExplainRefused(t *testing.T, run func(string, ...string) (string, int), token, client string, args []string, want ...string) {
	t.Helper()
	out, code := run(token, append([]string{"explain", "web", "--client", client}, args...)...)
	for _, w := range want {
		if code != 1 || !strings.Contains(out, w) {
			t.Errorf("graylanectl explain web %s: exit %d: %s; want exit 1 naming %q", strings.Join(args, " "), code, out, w)
			return
		}
	}
	t.Logf("graylanectl explain web %s: %s", strings.Join(args, " "), strings.TrimSpace(out))
}
