package agent_test

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/service"
)

// migratedRE reads the number of flows a restart copied into a new table.
var migratedRE = regexp.MustCompile(`"msg":"migrated a map","map":"flows","entries":(\d+)`)

// upgraded is graylane-agent built with the changed program of the upgrade
// test (bpf: build tag graylane_upgrade_test).
var upgraded = labagent.Binary{Tags: []string{"graylane_upgrade_test"}}

// TestSurviveAgent: under steady load (long-lived TCP connections echoing
// data every 10 ms, a new connection every 5 ms) the agent is killed with
// SIGKILL and restarted, then stopped and replaced by a rebuilt binary
// with a changed program, then restarted with a larger flow table (the
// flows migrate). Not one new connection fails, no long-lived
// connection is reset or stalls, and the kernel's weight never changes.
// Then `graylane-agent cleanup` takes Graylane off the host. It runs on
// every kind of hook: TCX links, clsact filters (TCX forced off) and XDP
// links (generic XDP: native XDP on a veth needs a lab of its own kind).
func TestSurviveAgent(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		env        []string
		hook       string
	}{
		{"tcx", "auto", nil, "tcx"},
		{"clsact", "tc", []string{"GRAYLANE_DISABLE_FEATURES=tcx"}, "tc-clsact"},
		{"xdp", "generic", nil, "xdp-generic"},
	} {
		t.Run(tc.name, func(t *testing.T) { testSurvive(t, tc.mode, tc.env, tc.hook) })
	}
}

func testSurvive(t *testing.T, mode string, env []string, hook string) {
	testenv.RequirePrivileges(t)
	bin, err := agent.Path()
	if err != nil {
		t.Fatal(err)
	}
	newBin, err := upgraded.Path()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lab := netlab.NewT(t, netlab.Config{})
	for _, h := range lab.Backends() {
		if _, err := h.StartServers(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s := web("echo", lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 2000)
	sv := &survival{t: t, ctx: ctx, lab: lab, newBin: newBin,
		opts: labagent.Options{Binary: bin, Mode: mode, Env: env, Services: []service.Service{s}}}
	sv.start(sv.opts)
	defer func() { sv.a.Kill(); sv.a.Remove() }()

	weights := watchWeight(t, sv.a.PinPath(), s)
	load, err := lab.Client.StartSteadyLoad(ctx, netip.AddrPortFrom(netlab.VIP4, 81), 20, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()
	sv.pause()

	sv.restartAfterKill(hook)
	sv.upgrade()
	sv.resizeFlowTable()

	rep := load.Stop()
	stopped = true
	seen := weights.stop()
	checkUndisturbed(t, rep, seen, s.CanaryWeight)
	sv.cleanup()
}

// survival is what the phases of testSurvive share: the lab, the agent
// running now, and how the agents were started.
type survival struct {
	t       *testing.T
	ctx     context.Context
	lab     *netlab.Lab
	a       *labagent.Agent  // the agent running now
	opts    labagent.Options // the first agent's
	up      labagent.Options // the upgraded agent's
	newBin  string           // the rebuilt binary, with a changed program
	cfgPath string           // the agent's configuration, once the upgrade read it
}

// start starts an agent with opts; it is the running one from now on.
func (sv *survival) start(opts labagent.Options) {
	var err error
	if sv.a, err = labagent.Start(sv.ctx, sv.lab, opts); err != nil {
		sv.t.Fatal(err)
	}
}

func (sv *survival) pause() { time.Sleep(time.Second) }

// restartAfterKill: kill -9, a second without an agent, start again; the
// new agent keeps the attachments and the data path it finds.
func (sv *survival) restartAfterKill(hook string) {
	sv.a.Kill()
	sv.pause()
	sv.start(sv.opts)
	requireLog(sv.t, sv.a, `"msg":"steering on interface: kept the previous agent's attachment"`, `"hook":"`+hook+`"`)
	requireLog(sv.t, sv.a, `"msg":"took over the previous agent's data path"`)
	requireLog(sv.t, sv.a, `"msg":"kept steering on interface: same program"`)
	sv.pause()
}

// upgrade: a clean stop, then the rebuilt binary with another program,
// after its preflight check.
func (sv *survival) upgrade() {
	if err := sv.a.Stop(); err != nil {
		sv.t.Fatal(err)
	}
	sv.pause()
	sv.cfgPath = filepath.Join(filepath.Dir(sv.a.PinPath()), "agent.yaml")
	sv.checkBeforeUpgrade()
	sv.up = sv.opts
	sv.up.Binary = sv.newBin
	sv.start(sv.up)
	requireLog(sv.t, sv.a, `"msg":"kept steering on interface: program replaced"`)
	sv.pause()
}

// checkBeforeUpgrade runs the preflight of the upgrade: the new binary's
// check says what it would do with the pins. It runs in the gateway's
// namespace, where the interfaces are.
func (sv *survival) checkBeforeUpgrade() {
	var out []byte
	err := sv.lab.Gateway.Do(func() error {
		var err error
		out, err = exec.CommandContext(sv.ctx, sv.newBin, "check", "-config", sv.cfgPath).CombinedOutput()
		return err
	})
	if err != nil || !strings.Contains(string(out), "no map would be reset") || !regexp.MustCompile(`(?m)^flows +adopted`).Match(out) ||
		!regexp.MustCompile(`(?m)^`+netlab.GatewayClientIf+` +client +veth +yes +`).Match(out) {
		sv.t.Errorf("check before the upgrade: %v\n%s", err, out)
	}
	if i := strings.Index(string(out), "interfaces ("); i >= 0 {
		sv.t.Logf("check before the upgrade:\n%s", out[i:])
	}
}

// resizeFlowTable: a restart with another flow table size: the live flows
// are copied into the new table before (and after) the programs switch to
// it.
func (sv *survival) resizeFlowTable() {
	t := sv.t
	if err := sv.a.Stop(); err != nil {
		t.Fatal(err)
	}
	resized := sv.up
	resized.FlowTable = 2 * 65536
	sv.start(resized)
	requireLog(t, sv.a, `"msg":"found a previous agent's map"`, `"map":"flows"`, `"fate":"migrated"`)
	requireLog(t, sv.a, `"msg":"migrated a map"`, `"map":"flows"`)
	// Same weights and backends would steer a lost flow back to its
	// backend by the hash alone: count the copied flows instead.
	migrated := -1
	for _, l := range sv.a.Log() {
		if m := migratedRE.FindStringSubmatch(l); m != nil {
			migrated, _ = strconv.Atoi(m[1])
		}
	}
	t.Logf("flows migrated into the larger table: %d", migrated)
	if migrated < 20 {
		t.Errorf("%d flows migrated, fewer than the 20 long-lived connections", migrated)
	}
	sv.pause()
}

// checkUndisturbed checks the steady load lived through the restarts
// without a failure or a stall, and the kernel showed only weight.
func checkUndisturbed(t *testing.T, rep netlab.SteadyReport, seen []string, weight service.Weight) {
	t.Logf("steady load: %s", rep)
	if f := rep.Failures(); f != "" {
		t.Errorf("the load saw failures: %s", f)
	}
	if rep.MaxRoundGap > 500*time.Millisecond {
		t.Errorf("a long-lived connection stalled for %v", rep.MaxRoundGap)
	}
	if rep.NewConns < 500 || len(rep.NewByBackend) < 2 {
		t.Errorf("too little load to tell: %s", rep)
	}
	if len(seen) != 1 || seen[0] != weight.String() {
		t.Errorf("kernel weights seen during the restarts: %v, want only %s", seen, weight)
	}
}

// cleanup: `graylane-agent cleanup` refuses while the agent runs; once it
// stopped, it takes the programs off and the VIP goes dark.
func (sv *survival) cleanup() {
	t, ctx, lab := sv.t, sv.ctx, sv.lab
	cleanup := func() ([]byte, error) {
		return exec.CommandContext(ctx, sv.newBin, "cleanup", "-config", sv.cfgPath).CombinedOutput()
	}
	if out, err := cleanup(); err == nil || !strings.Contains(string(out), "an agent is running") {
		t.Errorf("cleanup with the agent running: %v\n%s", err, out)
	}
	if err := sv.a.Stop(); err != nil {
		t.Fatal(err)
	}
	var out []byte
	err := lab.Gateway.Do(func() error {
		var err error
		out, err = cleanup()
		return err
	})
	if err != nil {
		t.Fatalf("cleanup: %v\n%s", err, out)
	}
	if err := lab.Gateway.Do(func() error { return nothingAttached(t) }); err != nil {
		t.Fatal(err)
	}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	if _, err := lab.Client.DialTCP(dctx, netip.Addr{}, netip.AddrPortFrom(netlab.VIP4, 81)); err == nil {
		t.Error("the VIP still answers after cleanup")
	}
}

// requireLog fails unless one of the agent's log lines has every part.
func requireLog(t *testing.T, a *labagent.Agent, parts ...string) {
	t.Helper()
	for _, l := range a.Log() {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return
		}
	}
	t.Errorf("no log line with %q:\n%s", parts, strings.Join(a.Log(), "\n"))
}

// nothingAttached checks the lab gateway's interfaces have no XDP, TCX or
// tc program left.
func nothingAttached(t *testing.T) error {
	for _, ifname := range []string{netlab.GatewayClientIf, netlab.GatewayBackendIf} {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("%s: XDP program still attached", ifname)
		}
		progs, err := link.QueryPrograms(link.QueryOptions{Target: l.Attrs().Index, Attach: ebpf.AttachTCXIngress})
		if err != nil {
			return err
		}
		if len(progs.Programs) != 0 {
			t.Errorf("%s: %d tcx programs still attached", ifname, len(progs.Programs))
		}
		filters, err := netlink.FilterList(l, netlink.HANDLE_MIN_INGRESS)
		if err == nil && len(filters) > 0 {
			t.Errorf("%s: %d tc filters still attached", ifname, len(filters))
		}
	}
	return nil
}

// weightWatch reads a service's weight from the pinned maps every 20 ms.
type weightWatch struct {
	stop func() []string
}

// watchWeight records every distinct weight (or read failure) the kernel
// shows for s, in order, until stop (which reads once more).
func watchWeight(t *testing.T, pinPath string, s service.Service) weightWatch {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var seen []string
	note := func(v string) {
		mu.Lock()
		defer mu.Unlock()
		if len(seen) == 0 || seen[len(seen)-1] != v {
			seen = append(seen, v)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 100000; i++ {
			final := ctx.Err() != nil // one last read once stopped
			v, err := datapath.OpenPinned(pinPath)
			if err != nil {
				note("open: " + err.Error())
			} else {
				ks, ok, err := v.Service(s.Frontend())
				switch {
				case err != nil:
					note("read: " + err.Error())
				case !ok:
					note("absent")
				default:
					note(ks.Weight.String())
				}
				v.Close()
			}
			if final {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return weightWatch{stop: func() []string {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}}
}
