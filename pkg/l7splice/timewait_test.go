package l7splice

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/bpf/l7"
)

// TestTimeWaitReuse: when the gateway closed a connection first (as the
// agent does when it forwards a backend's FIN), it holds the tuple in
// TIME_WAIT, and a client that reuses its port for a new connection sends
// a SYN that l7_assign gives to the time-wait socket. With l7_lookup
// attached, the kernel's listener lookup for VIP:port finds the
// transparent listener and the SYN opens the new connection at once;
// without it, the time-wait socket answers an ACK, the client resets it
// and retransmits its SYN (the L7 first request's p99 tail, 8-16 ms).
// Both are asserted from the client's own counters: resets sent and SYNs
// retransmitted.
func TestTimeWaitReuse(t *testing.T) {
	for _, c := range []struct {
		name     string
		noLookup bool
	}{{"with l7_lookup", false}, {"without l7_lookup", true}} {
		t.Run(c.name, func(t *testing.T) {
			g := newGWLab(t, labOpts{stable: 1, noLookup: c.noLookup})
			const port = 40123
			first := g.dialFrom(t, port)
			a := g.accept(t, 2*time.Second)
			a.Close() // the gateway closes first: TIME_WAIT is its
			if _, err := io.Copy(io.Discard, first); err != nil {
				t.Fatal(err)
			}
			first.Close()
			if !g.hasTimeWait(t, port) {
				t.Fatal("the gateway holds no TIME_WAIT socket for the first connection")
			}
			before := g.clientCounters(t)
			second := g.dialFrom(t, port)
			defer second.Close()
			b := g.accept(t, 5*time.Second)
			defer b.Close()
			after := g.clientCounters(t)
			rsts, synRetrans := after.outRsts-before.outRsts, after.synRetrans-before.synRetrans
			st, _ := g.k.Stats()
			t.Logf("client: %d resets sent, %d SYNs retransmitted; gateway: %s", rsts, synRetrans, st)
			if c.noLookup && (rsts == 0 || synRetrans == 0) {
				t.Errorf("without l7_lookup the reuse cost no reset and no retransmission: the kernel changed, revisit l7.c")
			}
			if !c.noLookup && (rsts != 0 || synRetrans != 0) {
				t.Errorf("with l7_lookup the reuse cost %d resets and %d SYN retransmissions, want none", rsts, synRetrans)
			}
			if !c.noLookup && st.Get(lookupListenerStat) == 0 {
				t.Error("l7_lookup answered no lookup")
			}
		})
	}
}

// dialFrom connects the lab's client to the VIP from port.
func (g *gwLab) dialFrom(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	var c net.Conn
	err := g.lab.Client.Do(func() error {
		d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: g.lab.Client.Addr4.AsSlice(), Port: port}}
		d.SetMultipathTCP(false)
		var err error
		c, err = d.DialContext(context.Background(), "tcp", g.vip.String())
		return err
	})
	if err != nil {
		t.Fatalf("dial from port %d: %v", port, err)
	}
	return c.(*net.TCPConn)
}

// hasTimeWait reports whether the gateway holds a TIME_WAIT socket from
// the client's port to the VIP (/proc/net/tcp, state 06).
func (g *gwLab) hasTimeWait(t *testing.T, port int) bool {
	t.Helper()
	found := false
	err := g.lab.Gateway.Do(func() error {
		b, err := os.ReadFile("/proc/thread-self/net/tcp")
		if err != nil {
			return err
		}
		want := fmt.Sprintf(":%04X", port)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) > 3 && strings.HasSuffix(f[2], want) && f[3] == "06" {
				found = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

type tcpCounters struct{ outRsts, synRetrans uint64 }

// clientCounters reads the client namespace's Tcp OutRsts and TcpExt
// TCPSynRetrans.
func (g *gwLab) clientCounters(t *testing.T) tcpCounters {
	t.Helper()
	var c tcpCounters
	err := g.lab.Client.Do(func() error {
		var err error
		if c.outRsts, err = netstatValue("/proc/thread-self/net/snmp", "Tcp:", "OutRsts"); err != nil {
			return err
		}
		c.synRetrans, err = netstatValue("/proc/thread-self/net/netstat", "TcpExt:", "TCPSynRetrans")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// netstatValue reads one counter of a /proc/net/snmp-style file: a line
// of names after prefix, then a line of values.
func netstatValue(path, prefix, name string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var names []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != prefix {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, n := range names {
			if n == name && i < len(fields) {
				return strconv.ParseUint(fields[i], 10, 64)
			}
		}
		return 0, fmt.Errorf("%s: no %s %s", path, prefix, name)
	}
	return 0, fmt.Errorf("%s: no %s line", path, prefix)
}

// lookupListenerStat is the counter of lookups l7_lookup answered.
const lookupListenerStat = l7.L7StatSTAT_LOOKUP_LISTENER
