// Package labagent runs a real graylane-agent process on the gateway of a
// netlab lab, the way an operator runs it: a configuration file, a
// manifests file, `ip netns exec`, SIGHUP to reload, SIGTERM to stop. Tests,
// benchmarks and the demo use it; they read what the kernel does from the
// maps the agent pins, never from the agent's memory.
package labagent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/datapath"
	"github.com/graylane/graylane/pkg/manifest"
	"github.com/graylane/graylane/pkg/service"
)

// Options configure an agent in a lab.
type Options struct {
	// Binary is the graylane-agent executable.
	Binary string
	// Mode is the agent's xdpMode (auto, native, generic, tc); default auto.
	Mode string
	// FlowTable is the agent's flowTable; default 65536.
	FlowTable int
	// Services are the initial manifests.
	Services []service.Service
	// Log receives the agent's log lines (JSON); nil discards them.
	Log io.Writer
	// Host is the gateway the agent runs on: lab.Gateway (nil) or one of
	// lab.Peers (which steer nothing: their only interface faces the
	// backends).
	Host *netlab.Host
	// Cluster makes the agent a member of a cluster of the lab's
	// gateways; nil: a single-node cluster.
	Cluster *Cluster
	// Extra is appended to the agent's configuration file (YAML).
	Extra string
	// Env is added to the agent's environment (test hooks such as
	// GRAYLANE_DISABLE_FEATURES).
	Env []string
	// Tokens, with Cluster, serve the API over HTTPS on APIPort of the
	// agent's cluster address, with these bearer tokens (secret ->
	// tenant; "*" is admin).
	Tokens map[string]string
	// HostBPFFS pins below the host's /sys/fs/bpf, as a production agent
	// does, instead of in a bpffs the lab mounts for it beforehand: under
	// ip netns exec the agent then has to find the host's bpffs itself.
	HostBPFFS bool
	// Manager, if not nil, plays systemd's part: the agent gets its
	// notification socket and file descriptor store, and the descriptors
	// stored by an earlier agent (Manager).
	Manager *Manager
}

// APIPort is the HTTPS API port of lab agents given Tokens.
const APIPort = 7443

// Agent is a graylane-agent process on a lab's gateway.
type Agent struct {
	lab     *netlab.Lab
	host    *netlab.Host
	dir     string // config, manifests and the bpffs mount
	pinPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error

	mu    sync.Mutex
	lines []string // log lines so far
	cond  *sync.Cond
}

// ReadyTimeout bounds how long Start and Apply wait for the agent.
const ReadyTimeout = 30 * time.Second

// Start writes the configuration and manifests, mounts a bpffs for the
// agent's pins, starts the agent in the gateway's namespace and waits until
// it logs that it is ready.
func Start(ctx context.Context, lab *netlab.Lab, opts Options) (*Agent, error) {
	if opts.Mode == "" {
		opts.Mode = "auto"
	}
	if opts.FlowTable == 0 {
		opts.FlowTable = 65536
	}
	bin, err := filepath.Abs(opts.Binary)
	if err != nil {
		return nil, err
	}
	host := opts.Host
	if host == nil {
		host = lab.Gateway
	}
	a, err := newAgent(lab, host)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			a.cleanupFiles()
		}
	}()
	if opts.HostBPFFS {
		if err := a.useHostBPFFS(); err != nil {
			return nil, err
		}
	} else if err := a.mountPins(); err != nil {
		return nil, err
	}
	if err := a.writeManifests(opts.Services); err != nil {
		return nil, err
	}
	if err := os.WriteFile(a.configPath(), []byte(a.config(opts)), 0o600); err != nil {
		return nil, fmt.Errorf("labagent: %w", err)
	}
	if err := a.start(bin, opts); err != nil {
		return nil, err
	}
	if _, err := a.waitLog(ctx, 0, `"msg":"ready"`); err != nil {
		a.Kill()
		a.cleanupFiles()
		return nil, err
	}
	ok = true
	return a, nil
}

// newAgent makes the directory of host's agent. One directory per host: a
// restarted agent finds its data again.
func newAgent(lab *netlab.Lab, host *netlab.Host) (*Agent, error) {
	dir := filepath.Join("/run/graylane-lab", lab.Name, host.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("labagent: %w", err)
	}
	a := &Agent{lab: lab, host: host, dir: dir, pinPath: filepath.Join(dir, "bpf"), exited: make(chan struct{})}
	a.cond = sync.NewCond(&a.mu)
	return a, nil
}

// mountPins mounts a bpffs on the agent's pin path, unless one is there.
// The agent runs in its own mount namespace (ip netns exec), where
// /sys/fs/bpf is not mounted: a bpffs mounted here beforehand is visible
// to both sides, and its pins outlive the agent process.
func (a *Agent) mountPins() error {
	if err := os.MkdirAll(a.pinPath, 0o700); err != nil {
		return fmt.Errorf("labagent: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(a.pinPath, &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		if err := unix.Mount("bpf", a.pinPath, "bpf", 0, "mode=0700"); err != nil {
			return fmt.Errorf("labagent: mount bpffs on %s: %w", a.pinPath, err)
		}
	}
	return nil
}

// useHostBPFFS moves the agent's pins below the host's /sys/fs/bpf, in a
// directory of the lab's name (Remove deletes it). A restarted agent of
// the same host keeps it; a start finds none left by another run (a lab's
// name is its own).
func (a *Agent) useHostBPFFS() error {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/bpf", &st); err != nil || st.Type != unix.BPF_FS_MAGIC {
		return errors.New("labagent: /sys/fs/bpf is not a bpffs (make bpffs mounts it)")
	}
	a.pinPath = filepath.Join("/sys/fs/bpf", "graylane-lab-"+a.lab.Name+"-"+a.host.Name)
	return nil
}

// config renders the agent's configuration file.
func (a *Agent) config(opts Options) string {
	ifaces := fmt.Sprintf("  - {name: %s, role: client}\n  - {name: %s, role: backend}\n", netlab.GatewayClientIf, netlab.GatewayBackendIf)
	if a.host != a.lab.Gateway {
		ifaces = fmt.Sprintf("  - {name: %s, role: backend}\n", netlab.GatewayBackendIf)
	}
	cfg := fmt.Sprintf(`node: %s
interfaces:
%sxdpMode: %s
bpffs: %s
dataDir: %s
flowTable: %d
manifests: %s
listen: {api: "unix://%s", metrics: "127.0.0.1:9477"%s}
`, a.host.Name, ifaces, opts.Mode, a.pinPath, a.dir, opts.FlowTable, a.manifestsPath(), a.socketPath(), apiTCP(a.host, opts))
	cfg += tokensConfig(opts.Tokens)
	if opts.Cluster != nil {
		cfg += clusterConfig(opts.Cluster, a.host)
	}
	return cfg + opts.Extra
}

// tokensConfig renders the tokens section for tokens (secret -> tenant),
// in the order of the secrets; "" for none.
func tokensConfig(tokens map[string]string) string {
	if len(tokens) == 0 {
		return ""
	}
	secrets := make([]string, 0, len(tokens))
	for secret := range tokens {
		secrets = append(secrets, secret)
	}
	slices.Sort(secrets)
	cfg := "tokens:\n"
	for i, secret := range secrets {
		cfg += fmt.Sprintf("  - {name: t%d, secret: %q, tenant: %q}\n", i, secret, tokens[secret])
	}
	return cfg
}

// start starts the agent process bin in the host's namespace, with its
// log read into a.lines (and copied to opts.Log).
func (a *Agent) start(bin string, opts Options) error {
	a.cmd = a.host.Command(context.Background(), bin, "--config", a.configPath(), "--log-format", "json")
	if len(opts.Env) > 0 {
		a.cmd.Env = append(os.Environ(), opts.Env...)
	}
	if opts.Manager != nil {
		opts.Manager.command(a.cmd, bin)
	}
	stderr, err := a.cmd.StderrPipe()
	if err != nil {
		return err
	}
	done, err := netlab.Start(a.cmd)
	if err != nil {
		return fmt.Errorf("labagent: start %s: %w", bin, err)
	}
	go a.readLog(stderr, opts.Log)
	go func() {
		a.waitErr = <-done
		close(a.exited)
		a.mu.Lock()
		a.cond.Broadcast()
		a.mu.Unlock()
	}()
	return nil
}

// apiTCP renders the listen.apiTCP setting for opts.Tokens.
func apiTCP(host *netlab.Host, opts Options) string {
	if len(opts.Tokens) == 0 || opts.Cluster == nil {
		return ""
	}
	return fmt.Sprintf(", apiTCP: %q", netip.AddrPortFrom(netip.MustParseAddrPort(ClusterAddr(host)).Addr(), APIPort))
}

func (a *Agent) configPath() string    { return filepath.Join(a.dir, "agent.yaml") }
func (a *Agent) manifestsPath() string { return filepath.Join(a.dir, "services.yaml") }
func (a *Agent) socketPath() string    { return filepath.Join(a.dir, "api.sock") }

// SocketPath is the agent's API socket (for graylanectl --server unix://…).
func (a *Agent) SocketPath() string { return a.socketPath() }

// Client returns a client of the agent's API (its unix socket, which the
// test process reaches directly: only the network is namespaced).
func (a *Agent) Client() *api.Client {
	c, err := api.NewClient(api.ClientOptions{Server: "unix://" + a.socketPath()})
	if err != nil {
		panic(err) // a bug: the path is ours
	}
	return c
}

// ConfigPath is the agent's configuration file.
func (a *Agent) ConfigPath() string { return a.configPath() }

// PinPath is where the agent pins its maps.
func (a *Agent) PinPath() string { return a.pinPath }

// Pid is the agent's process id (0 before it started).
func (a *Agent) Pid() int {
	if a.cmd == nil || a.cmd.Process == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

func (a *Agent) writeManifests(svcs []service.Service) error {
	data := []byte{}
	if len(svcs) > 0 {
		var err error
		if data, err = manifest.Marshal(svcs); err != nil {
			return fmt.Errorf("labagent: %w", err)
		}
	}
	// Replace atomically: the agent may read at any moment.
	tmp := a.manifestsPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("labagent: %w", err)
	}
	return os.Rename(tmp, a.manifestsPath())
}

// Apply replaces the agent's services with svcs through its API (services
// not in svcs are deleted) and waits until the kernel applied them.
func (a *Agent) Apply(ctx context.Context, svcs []service.Service) error {
	c := a.Client()
	opts := api.WriteOptions{WaitApplied: true, Timeout: 10 * time.Second}
	if len(svcs) > 0 {
		data, err := manifest.Marshal(svcs)
		if err != nil {
			return fmt.Errorf("labagent: %w", err)
		}
		if _, err := c.Apply(ctx, data, opts); err != nil {
			return err
		}
	}
	have, err := c.Services(ctx)
	if err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, s := range svcs {
		keep[s.Name] = true
	}
	for _, s := range have {
		if !keep[s.Name] {
			if _, err := c.Delete(ctx, s.Name, opts); err != nil {
				return err
			}
		}
	}
	return nil
}

// ApplyRaw posts data (which may be invalid: that is what tests of bad
// input do) as manifests to the agent's API and returns its verdict.
func (a *Agent) ApplyRaw(ctx context.Context, data []byte) error {
	_, err := a.Client().Apply(ctx, data, api.WriteOptions{WaitApplied: true, Timeout: 10 * time.Second})
	return err
}

// Reload sends SIGHUP and waits for the agent's answer.
func (a *Agent) Reload(ctx context.Context) error {
	from := a.logLen()
	if err := a.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("labagent: signal agent: %w", err)
	}
	line, err := a.waitLog(ctx, from, `"msg":"reloaded"`, `"msg":"reload failed`)
	if err != nil {
		return err
	}
	if strings.Contains(line, `"msg":"reload failed`) {
		return fmt.Errorf("agent refused the reload: %s", line)
	}
	return nil
}

// View opens the agent's pinned maps.
func (a *Agent) View() (*datapath.View, error) { return datapath.OpenPinned(a.pinPath) }

// Stop sends SIGTERM, waits for the agent to exit, and returns an error
// unless it exited cleanly. The agent's files stay (Remove deletes them).
func (a *Agent) Stop() error {
	select {
	case <-a.exited:
		return fmt.Errorf("labagent: agent had already exited: %v", a.waitErr)
	default:
	}
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-a.exited:
	case <-time.After(ReadyTimeout):
		a.cmd.Process.Kill()
		<-a.exited
		return errors.New("labagent: agent did not stop within 30s of SIGTERM")
	}
	if a.waitErr != nil {
		return fmt.Errorf("labagent: agent exited with %v; last lines:\n%s", a.waitErr, a.tail(10))
	}
	return nil
}

// Kill ends the agent with SIGKILL, as a crash would; its files stay.
func (a *Agent) Kill() {
	if a.cmd != nil && a.cmd.Process != nil {
		a.cmd.Process.Kill()
		<-a.exited
	}
}

// Exited reports whether the agent process has ended.
func (a *Agent) Exited() bool {
	select {
	case <-a.exited:
		return true
	default:
		return false
	}
}

// Remove deletes the agent's files (configuration, data, bpffs mount).
func (a *Agent) Remove() { a.cleanupFiles() }

func (a *Agent) cleanupFiles() {
	if err := unix.Unmount(a.pinPath, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		fmt.Fprintf(os.Stderr, "labagent: unmount %s: %v\n", a.pinPath, err)
	}
	if strings.HasPrefix(a.pinPath, "/sys/fs/bpf/graylane-lab-") {
		os.RemoveAll(a.pinPath) // unpins: what stays attached goes with the lab's interfaces
	}
	os.RemoveAll(a.dir)
	os.Remove(filepath.Dir(a.dir)) // the lab's directory, once its last agent is gone
}

// Log returns the agent's log lines so far.
func (a *Agent) Log() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.lines...)
}

func (a *Agent) tail(n int) string {
	l := a.Log()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func (a *Agent) logLen() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.lines)
}

func (a *Agent) readLog(r io.Reader, copyTo io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if copyTo != nil {
			fmt.Fprintln(copyTo, line)
		}
		a.mu.Lock()
		a.lines = append(a.lines, line)
		a.cond.Broadcast()
		a.mu.Unlock()
	}
}

// waitLog waits for a log line at index >= from containing one of subs.
func (a *Agent) waitLog(ctx context.Context, from int, subs ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		a.mu.Lock()
		a.cond.Broadcast()
		a.mu.Unlock()
	})
	defer stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := from; ; {
		for ; i < len(a.lines); i++ {
			for _, s := range subs {
				if strings.Contains(a.lines[i], s) {
					return a.lines[i], nil
				}
			}
		}
		select {
		case <-a.exited:
			return "", fmt.Errorf("labagent: agent exited (%v); last lines:\n%s", a.waitErr, lastLines(a.lines, 10))
		default:
		}
		if ctx.Err() != nil {
			return "", fmt.Errorf("labagent: no %q from the agent: %w; last lines:\n%s", subs, ctx.Err(), lastLines(a.lines, 10))
		}
		a.cond.Wait()
	}
}

func lastLines(l []string, n int) string {
	if len(l) > n {
		l = l[len(l)-n:]
	}
	var b bytes.Buffer
	for _, s := range l {
		b.WriteString(s)
		b.WriteByte('\n')
	}
	return b.String()
}

// Binary builds a command of this module (graylane-agent by default),
// once, into a temporary directory, for tests and benchmarks that run the
// real thing. The zero value builds the agent; Remove deletes the build
// (call it from TestMain).
type Binary struct {
	// Package is the command's import path; default the agent's.
	Package string
	// Tags are build tags (graylane_upgrade_test: the agent carries the
	// changed program of the upgrade test).
	Tags []string

	once sync.Once
	dir  string
	path string
	err  error
}

// CtlPackage is graylanectl's import path, for Binary.Package.
const CtlPackage = "github.com/graylane/graylane/ctl/cmd/graylanectl"

// Path builds the command on first use and returns the executable's path.
func (b *Binary) Path() (string, error) {
	b.once.Do(func() {
		pkg := b.Package
		if pkg == "" {
			pkg = "github.com/graylane/graylane/agent/cmd/graylane-agent"
		}
		if b.dir, b.err = os.MkdirTemp("", "graylane-build-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, filepath.Base(pkg))
		args := []string{"build", "-o", b.path}
		if len(b.Tags) > 0 {
			args = append(args, "-tags", strings.Join(b.Tags, ","))
		}
		out, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("labagent: build %s: %v\n%s", pkg, err, out)
		}
	})
	return b.path, b.err
}

// Remove deletes the build, if any.
func (b *Binary) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}
