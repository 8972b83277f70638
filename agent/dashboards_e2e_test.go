package agent_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/api"
)

// Tests of deploy/: the Grafana dashboard and the Prometheus alerting
// rules, checked by promtool and evaluated by a real Prometheus scraping a
// lab agent under traffic.

const (
	dashboardFile = "../deploy/grafana/graylane.json"
	rulesFile     = "../deploy/prometheus/graylane-rules.yml"
	rulesTestFile = "../deploy/prometheus/graylane-rules.test.yml"
)

// noLabData lists the dashboard's panels (by title) that legitimately
// show nothing in TestDashboardQueries' lab, and why. Their queries must
// still evaluate without error.
var noLabData = map[string]string{
	"Shadow comparisons": "graylane_shadow_* have series only once a release's shadow gate ran; the lab release has none",
}

// labVariables are the values the dashboard's template variables take in
// the lab (Grafana renders a multi-value variable as a regex; one value is
// one).
var labVariables = map[string]string{
	"$__rate_interval": "1m",
	"$job":             "graylane",
	"$node":            "gw",
	"$service":         "web",
}

// dashPanel is what the tests read of a Grafana panel.
type dashPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr       string `json:"expr"`
		RefID      string `json:"refId"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"` // a collapsed row's
}

type dashboard struct {
	SchemaVersion int         `json:"schemaVersion"`
	UID           string      `json:"uid"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Query      any    `json:"query"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// panels returns the dashboard's panels that are not rows, those of
// collapsed rows included.
func (d dashboard) panels() []dashPanel {
	var out []dashPanel
	for _, p := range d.Panels {
		if p.Type == "row" {
			out = append(out, p.Panels...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// substitute replaces the template variables with their lab values; it
// fails on a variable it does not know.
func substitute(t *testing.T, expr string) string {
	t.Helper()
	names := make([]string, 0, len(labVariables))
	for name := range labVariables {
		names = append(names, name)
	}
	// Longest first: $__rate_interval before any shorter prefix.
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	for _, name := range names {
		expr = strings.ReplaceAll(expr, name, labVariables[name])
	}
	if strings.Contains(expr, "$") {
		t.Errorf("a variable without a lab value in %q", expr)
	}
	return expr
}

// TestDashboardFile: the dashboard is Grafana JSON of schema 39 or later
// with a Prometheus datasource variable and the job, node and service
// variables; every panel has a title of its own and queries, all through
// the datasource variable.
func TestDashboardFile(t *testing.T) {
	d := readDashboard(t)
	if d.SchemaVersion < 39 || d.UID == "" {
		t.Errorf("schemaVersion %d, uid %q: want 39 or later and a uid", d.SchemaVersion, d.UID)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	for name, typ := range map[string]string{"datasource": "datasource", "job": "query", "node": "query", "service": "query"} {
		if vars[name] != typ {
			t.Errorf("template variable %s: type %q, want %q", name, vars[name], typ)
		}
	}
	titles, ids := map[string]bool{}, map[int]bool{}
	for _, p := range d.panels() {
		if titles[p.Title] || ids[p.ID] {
			t.Errorf("panel %d %q: title or id used twice", p.ID, p.Title)
		}
		titles[p.Title], ids[p.ID] = true, true
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" || tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q, query %s: expr %q, want one through the datasource variable", p.Title, tg.RefID, tg.Expr)
			}
			substitute(t, tg.Expr)
		}
	}
	for title := range noLabData {
		if !titles[title] {
			t.Errorf("noLabData names %q, which is not a panel", title)
		}
	}
}

// TestAlertRules: promtool accepts the rules, and their unit tests (each
// alert fires on what it is about, after its `for`, and not for a healthy
// neighbour) pass.
func TestAlertRules(t *testing.T) {
	bin := testenv.RequireTool(t, "promtool", "prometheus")
	for _, args := range [][]string{{"check", "rules", rulesFile}, {"test", "rules", rulesTestFile}} {
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// ruleExprs returns the rules' expressions by alert name.
func ruleExprs(t *testing.T) map[string]string {
	t.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// labQuery is one query TestDashboardQueries evaluates.
type labQuery struct {
	what       string // the panel and query, variable or rule it comes from
	expr       string
	classic    bool   // asked of the Prometheus that keeps classic buckets
	mayBeEmpty string // why it may return nothing; "": it must return data
}

// labelValues parses a variable's label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// labQueries lists the dashboard's queries and variables, with the lab's
// values substituted, and the rules' expressions.
func labQueries(t *testing.T) []labQuery {
	t.Helper()
	d := readDashboard(t)
	var out []labQuery
	for _, p := range d.panels() {
		for _, tg := range p.Targets {
			out = append(out, labQuery{what: fmt.Sprintf("panel %q, query %s", p.Title, tg.RefID), expr: substitute(t, tg.Expr),
				classic: strings.Contains(tg.Expr, "_bucket"), mayBeEmpty: noLabData[p.Title]})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, v.Definition)
			continue
		}
		out = append(out, labQuery{what: "variable " + v.Name, expr: fmt.Sprintf("count by (%s) (%s)", m[2], substitute(t, m[1]))})
	}
	rules := ruleExprs(t)
	for _, name := range slices.Sorted(maps.Keys(rules)) {
		out = append(out, labQuery{what: "rule " + name, expr: rules[name], mayBeEmpty: "an alert has nothing to say about a healthy lab"})
	}
	return out
}

// promServer is a Prometheus in the lab gateway's namespace (where the
// agent's metrics listen), scraping the agent and evaluating the rules
// every second.
type promServer struct {
	name, base string
	client     *http.Client
}

func startPrometheus(t *testing.T, e *env, port int, native bool) *promServer {
	t.Helper()
	bin := testenv.RequireTool(t, "prometheus", "prometheus")
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "prometheus.yml")
	text := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\n"+
		"scrape_configs:\n  - job_name: graylane\n    static_configs: [{targets: ['127.0.0.1:9477']}]\n", rules)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port)}
	name := "classic"
	if native {
		// Prometheus 2.x then keeps a histogram with native buckets as
		// native only: the classic buckets need the second server.
		args, name = append(args, "--enable-feature=native-histograms"), "native"
	}
	cmd := e.lab.Gateway.Command(e.ctx, bin, args...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	done, err := netlab.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("prometheus (%s) log:\n%s", name, logs.String())
		}
	})
	return &promServer{name: name, base: fmt.Sprintf("http://127.0.0.1:%d", port), client: gatewayHTTP(e.lab)}
}

// get decodes the answer of an API path into data; refused is what
// Prometheus said if it refused the request, err a failure to reach it.
func (p *promServer) get(path string, data any) (refused string, err error) {
	resp, err := p.client.Get(p.base + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var r struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if r.Status != "success" {
		return r.ErrorType + ": " + r.Error, nil
	}
	return "", json.Unmarshal(r.Data, data)
}

// query evaluates expr now and returns how many of its series have a
// value (NaN is none).
func (p *promServer) query(expr string) (n int, refused string, err error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if refused, err = p.get("/api/v1/query?query="+url.QueryEscape(expr), &data); refused != "" || err != nil {
		return 0, refused, err
	}
	if data.ResultType != "vector" {
		return 0, "a " + data.ResultType + ", not an instant vector", nil
	}
	var samples []struct {
		Value [2]any `json:"value"`
	}
	if err := json.Unmarshal(data.Result, &samples); err != nil {
		return 0, "", err
	}
	for _, s := range samples {
		if v, _ := s.Value[1].(string); v != "NaN" {
			n++
		}
	}
	return n, "", nil
}

// waitForData asks each query of its Prometheus every second until every
// one that must return data has (or d has passed). A query Prometheus
// refuses fails the test at once.
func waitForData(t *testing.T, native, classic *promServer, queries []labQuery, d time.Duration) {
	t.Helper()
	pending := slices.Clone(queries)
	deadline := time.Now().Add(d)
	for len(pending) > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		pending = slices.DeleteFunc(pending, func(q labQuery) bool {
			p := native
			if q.classic {
				p = classic
			}
			n, refused, err := p.query(q.expr)
			if err != nil {
				return false // not up yet
			}
			if refused != "" {
				t.Errorf("%s: Prometheus refuses %s: %s", q.what, q.expr, refused)
				return true
			}
			return n > 0 || q.mayBeEmpty != ""
		})
	}
	for _, q := range pending {
		t.Errorf("%s: no data after %v: %s", q.what, d, q.expr)
	}
}

// checkEvaluates: both servers evaluate every query without error (a
// query for the other kind of histogram returns nothing).
func checkEvaluates(t *testing.T, servers []*promServer, queries []labQuery) {
	t.Helper()
	for _, p := range servers {
		for _, q := range queries {
			if _, refused, err := p.query(q.expr); err != nil || refused != "" {
				t.Errorf("%s on the %s Prometheus: %v%s: %s", q.what, p.name, err, refused, q.expr)
			}
		}
	}
}

// checkRulesHealthy: the server loaded every rule, evaluates each without
// error, and none is pending or firing in the healthy lab.
func checkRulesHealthy(t *testing.T, p *promServer, want map[string]string) {
	t.Helper()
	var data struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
				State     string `json:"state"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if refused, err := p.get("/api/v1/rules", &data); err != nil || refused != "" {
		t.Fatalf("rules: %v%s", err, refused)
	}
	seen := map[string]bool{}
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			seen[r.Name] = true
			if r.Health != "ok" || r.LastError != "" || r.State != "inactive" {
				t.Errorf("rule %s: health %q (%s), state %q; want ok and inactive in a healthy lab", r.Name, r.Health, r.LastError, r.State)
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("Prometheus did not load rule %s", name)
		}
	}
}

// TestDashboardQueries: real Prometheus servers (one with native
// histograms, one keeping classic buckets) scrape a lab agent that steers
// HTTP traffic into a service under a running release (a canary answering
// one request in 20 with a 500). Every query of the dashboard, of its
// variables and of the rules evaluates on both without error; every panel
// has data (but those in noLabData); every rule is loaded, healthy, and
// quiet about the healthy lab. Then the canary fails and is slow: its
// breaker opens, and so does GraylaneBreakerOpen.
func TestDashboardQueries(t *testing.T) {
	testenv.RequirePrivileges(t)
	testenv.RequireTool(t, "prometheus", "prometheus")
	queries := labQueries(t)
	e := setup(t, netlab.Config{}, "auto")
	var f netlab.Faults
	f.Set(0, 20, 0)
	startRolloutServers(t, e.lab, &f)
	if err := e.agent.ApplyRaw(e.ctx, []byte(rolloutManifests(e.lab, "    - setWeight: 50\n      pause: {}", 20))); err != nil {
		t.Fatal(err)
	}
	if _, err := e.agent.Client().ReleaseAction(e.ctx, "web-v2", "start", api.WriteOptions{WaitApplied: true, Timeout: 10 * time.Second}); err != nil {
		t.Fatal(err)
	}
	l := startLoad(e.ctx, e.lab, 100)
	defer l.Stop()
	native := startPrometheus(t, e, 9090, true)
	classic := startPrometheus(t, e, 9091, false)
	start := time.Now()
	waitForData(t, native, classic, queries, 40*time.Second)
	t.Logf("%d queries answered within %v; client: %d ok, %d failed", len(queries),
		time.Since(start).Round(100*time.Millisecond), l.OK.Load(), l.Failed.Load())
	checkEvaluates(t, []*promServer{native, classic}, queries)
	checkRulesHealthy(t, native, ruleExprs(t))
	checkBreakerAlert(t, e, &f, native)
}

// checkBreakerAlert: the canary turns slow and failing, its breaker opens
// (and rolls it back), and GraylaneBreakerOpen goes pending: its `for` is
// longer than the test, and half-open follows after the 3 s cool-down,
// so the test looks for the alert in Prometheus' ALERTS series.
func checkBreakerAlert(t *testing.T, e *env, f *netlab.Faults, p *promServer) {
	t.Helper()
	f.Set(10, 16, slowDelay) // P99 above 300 ms and 6.25 % errors
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		r, err := e.agent.Client().Release(e.ctx, "web-v2")
		if err != nil {
			t.Fatal(err)
		}
		if r.Breaker == "open" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the breaker did not open within 20 s: %s, analysis %+v", r.Breaker, r.Analysis)
		}
		time.Sleep(100 * time.Millisecond)
	}
	const q = `max_over_time(ALERTS{alertname="GraylaneBreakerOpen",alertstate="pending",release="web-v2",service="web"}[1m])`
	deadline = time.Now().Add(10 * time.Second)
	for {
		n, refused, err := p.query(q)
		if n > 0 {
			t.Logf("breaker open, GraylaneBreakerOpen pending: %v after the faults began", time.Since(start).Round(100*time.Millisecond))
			return
		}
		if refused != "" || time.Now().After(deadline) {
			t.Fatalf("the breaker opened, but Prometheus has no pending GraylaneBreakerOpen: %v%s", err, refused)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
