package agent

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/agent/config"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
)

// TestL7SourceReturnRule: the return rule of l7.source client (fwmark
// 0x6c37 lookup 167, and table 167's local routes) goes with the L7 side
// that added it, even across a handover. In the gateway's namespace of a
// lab, with a service manager's store:
//
//   - an L7 side with source client adds it, and hands over (l7.close with
//     a store) leaving it, with its listeners and links, in the store;
//   - the next L7 side, with source gateway and what was stored, removes
//     it when it starts, and says so once;
//   - an L7 side started with source client whose configuration then says
//     gateway removes it when it stops (stopLocked).
func TestL7SourceReturnRule(t *testing.T) {
	testenv.RequirePrivileges(t)
	lab := netlab.NewT(t, netlab.Config{Stable: 1, Canary: -1})
	mgr := newFakeStore(t)
	gw := lab.Gateway

	pre, _ := newTestL7(t, config.L7SourceClient, nil)
	must(t, gw.Do(func() error { return pre.locked(pre.startLocked) }))
	wantReturnRule(t, gw, true, "after an L7 side with source client started")
	must(t, gw.Do(pre.close))
	wantReturnRule(t, gw, true, "after it handed over (the connections it handed over need it)")
	stored := mgr.received(t)
	if len(stored) == 0 {
		t.Fatal("the handover stored nothing in the service manager's store")
	}

	next, log := newTestL7(t, config.L7SourceGateway, stored)
	must(t, gw.Do(func() error { return next.locked(next.startLocked) }))
	wantReturnRule(t, gw, false, "after the next L7 side, with source gateway, started")
	if n := strings.Count(log.String(), "removed the return rule"); n != 1 {
		t.Errorf("the next L7 side said %d times that it removed the return rule, want once; its log:\n%s", n, log)
	}
	must(t, gw.Do(func() error { return next.locked(func() error { return next.stopLocked("test", false) }) }))

	changed, _ := newTestL7(t, config.L7SourceClient, nil)
	must(t, gw.Do(func() error { return changed.locked(changed.startLocked) }))
	wantReturnRule(t, gw, true, "after an L7 side with source client started")
	changed.cfg.Source = config.L7SourceGateway
	must(t, gw.Do(func() error { return changed.locked(func() error { return changed.stopLocked("test", false) }) }))
	wantReturnRule(t, gw, false, "after it stopped with its source changed to gateway")
}

// newTestL7 is an L7 side for the lab's gateway (cli0 client, bck0
// backend) with source, taking over stored, without a data path (no
// connection is made), logging into the buffer it returns.
func newTestL7(t *testing.T, source string, stored []*os.File) (*l7, *syncBuffer) {
	t.Helper()
	cfg := &config.Config{Interfaces: []config.Interface{
		{Name: netlab.GatewayClientIf, Role: config.RoleClient},
		{Name: netlab.GatewayBackendIf, Role: config.RoleBackend},
	}}
	cfg.L7.Source = source
	buf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(buf, nil))
	l := newL7(log, nil, cfg, newL7Carry(log, cfg, stored))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the L7 side with source %s:\n%s", source, buf)
		}
	})
	return l, buf
}

// locked runs fn with l.mu held.
func (l *l7) locked(fn func() error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fn()
}

// wantReturnRule checks, with netlink in h's namespace, that the rule
// fwmark 0x6c37 lookup 167 and table 167's routes are there, or not.
func wantReturnRule(t *testing.T, h *netlab.Host, want bool, when string) {
	t.Helper()
	var rules, routes int
	err := h.Do(func() error {
		for _, family := range []int{unix.AF_INET, unix.AF_INET6} {
			rs, err := netlink.RuleListFiltered(family, &netlink.Rule{Mark: 0x6c37, Table: 167},
				netlink.RT_FILTER_MARK|netlink.RT_FILTER_TABLE)
			if err != nil {
				return err
			}
			rts, err := netlink.RouteListFiltered(family, &netlink.Route{Table: 167}, netlink.RT_FILTER_TABLE)
			if err != nil {
				return err
			}
			rules, routes = rules+len(rs), routes+len(rts)
		}
		return nil
	})
	must(t, err)
	t.Logf("%s: %d rules fwmark 0x6c37 lookup 167, %d routes in table 167", when, rules, routes)
	if want && (rules != 2 || routes != 2) {
		t.Errorf("%s: want the rule and route of each family", when)
	}
	if !want && (rules != 0 || routes != 0) {
		t.Errorf("%s: want no rule and no route", when)
	}
}

// fakeStore is a service manager's file descriptor store (fdstore): the
// agent's notification socket, and the descriptors sent with FDSTORE=1,
// named as stored.
type fakeStore struct {
	fd int
}

func newFakeStore(t *testing.T) *fakeStore {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	t.Cleanup(func() { unix.Close(fd) })
	must(t, unix.Bind(fd, &unix.SockaddrUnix{Name: path}))
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("FDSTORE", "64")
	return &fakeStore{fd: fd}
}

// received returns the descriptors stored since the last call.
func (s *fakeStore) received(t *testing.T) []*os.File {
	t.Helper()
	var files []*os.File
	t.Cleanup(func() { closeAll(files) })
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(4*253))
	for {
		n, oobn, _, _, err := unix.Recvmsg(s.fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) {
			return files
		}
		must(t, err)
		name, stored := "", false
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			stored = stored || line == "FDSTORE=1"
			if v, ok := strings.CutPrefix(line, "FDNAME="); ok {
				name = v
			}
		}
		cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		must(t, err)
		for _, c := range cmsgs {
			fds, err := unix.ParseUnixRights(&c)
			must(t, err)
			for _, fd := range fds {
				if !stored {
					unix.Close(fd)
					continue
				}
				files = append(files, os.NewFile(uintptr(fd), name))
			}
		}
	}
}

// syncBuffer is a bytes.Buffer for a logger of several goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
