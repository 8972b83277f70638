package l7splice

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/bpf/l7"
)

// bulkBytes is what TestSpliceGiB sends through each path.
const bulkBytes = 1 << 30

// TestSpliceGiB sends 1 GiB from the client to a backend's sink through a
// spliced pair, and, for comparison in the same run, through plain routing
// to the backend's own address and through a Go proxy on the gateway
// (io.Copy both ways). The spliced transfer runs twice: with flow control
// off (every byte through the kernel), and with the default MaxInflight
// (where a direction the kernel falls behind on goes to user space). It
// checks every byte arrived (count and CRC-32C) and logs throughput, CPU
// and the most the gateway held for the backend; it asserts nothing about
// them.
func TestSpliceGiB(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB transfers: not in -short")
	}
	g := newGWLab(t, labOpts{stable: 1, opts: Options{MaxInflight: -1}})
	b := g.lab.Stable[0]
	startTestServer(t, b)
	sink := netip.AddrPortFrom(b.Addr4, testPort)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	routed := g.bulk(t, "routed", func() (*net.TCPConn, func() error) {
		c, err := g.lab.Client.DialTCP(ctx, netip.Addr{}, sink)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("sink\n")); err != nil {
			t.Fatal(err)
		}
		return c, func() error { return nil }
	})
	spliced := g.bulk(t, "spliced, flow control off", g.splicedBulk(ctx, t, sink))
	proxied := g.bulk(t, "go proxy", func() (*net.TCPConn, func() error) {
		c, a := g.dialVIP(ctx, t, "sink\n")
		return c, goProxy(ctx, t, g, a, sink)
	})
	// The same with flow control at its default, on a gateway of its own.
	g2 := newGWLab(t, labOpts{stable: 1})
	b2 := g2.lab.Stable[0]
	startTestServer(t, b2)
	flow := g2.bulk(t, "spliced, default MaxInflight", g2.splicedBulk(ctx, t, netip.AddrPortFrom(b2.Addr4, testPort)))
	t.Logf("throughput / routed: spliced %.2f, with flow control %.2f, go proxy %.2f", spliced.rate()/routed.rate(),
		flow.rate()/routed.rate(), proxied.rate()/routed.rate())
	t.Logf("machine CPU per byte / routed: spliced %.2f, with flow control %.2f, go proxy %.2f", spliced.cpuPerByte()/routed.cpuPerByte(),
		flow.cpuPerByte()/routed.cpuPerByte(), proxied.cpuPerByte()/routed.cpuPerByte())
}

// splicedBulk is bulk's setup for a spliced transfer to sink: it also
// samples, every millisecond, what the gateway holds for the backend.
func (g *gwLab) splicedBulk(ctx context.Context, t *testing.T, sink netip.AddrPort) func() (*net.TCPConn, func() error) {
	return func() (*net.TCPConn, func() error) {
		c, a := g.dialVIP(ctx, t, "sink\n")
		p, err := g.agent(ctx, a, sink, "")
		if err != nil {
			t.Fatal(err)
		}
		stop, peak := sampleHeld(p)
		return c, func() error {
			stop()
			t.Logf("the gateway held at most %d KiB for the backend", *peak>>10)
			return g.finishBulk(ctx, t, p)
		}
	}
}

// sampleHeld records the most p's backend socket holds (send queue and
// psock backlog: what was written to it, by the kernel and by user space,
// and not acknowledged) until stop is called.
func sampleHeld(p *Pair) (stop func(), peak *uint64) {
	peak = new(uint64)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for {
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
			v, err := p.peer(sideClient)
			if err != nil {
				continue
			}
			if info, err := p.socks[sideBackend].info(); err == nil {
				// Read apart, the counters can be a write out of step.
				user := uint64(p.user[sideBackend].Load())
				if held := int64(v.Base + v.Bytes + user - info.Bytes_acked); held > 0 {
					*peak = max(*peak, uint64(held))
				}
			}
		}
	}()
	return func() { close(done); <-finished }, peak
}

// dialVIP connects the client to the VIP, writes first and accepts the
// connection on the gateway.
func (g *gwLab) dialVIP(ctx context.Context, t *testing.T, first string) (client, accepted *net.TCPConn) {
	t.Helper()
	c, err := g.lab.Client.DialTCP(ctx, netip.Addr{}, g.vip)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(first)); err != nil {
		t.Fatal(err)
	}
	return c, g.accept(t, 10*time.Second)
}

// finishBulk checks a spliced bulk pair once the sink has answered: the
// kernel moved every byte, user space none, and the pair ends cleanly.
func (g *gwLab) finishBulk(ctx context.Context, t *testing.T, p *Pair) error {
	defer p.Close()
	defer func() {
		st, _ := g.k.Stats()
		toB, toC := p.UserBytes()
		t.Logf("spliced: stats %s; user space moved %d bytes to the backend, %d to the client", st, toB, toC)
	}()
	if err := p.Wait(ctx); err != nil {
		return fmt.Errorf("wait: %w", err)
	}
	toBackend, _, err := p.Bytes()
	if err != nil {
		return err
	}
	if user, _ := p.UserBytes(); toBackend+uint64(user) != bulkBytes {
		return fmt.Errorf("spliced %d bytes to the backend, %d in user space; want %d in all", toBackend, user, bulkBytes)
	}
	st, err := g.k.Stats()
	if err != nil {
		return err
	}
	t.Logf("spliced: stats %s (%.0f bytes per skb)", st, float64(st.Get(l7.L7StatSTAT_SPLICE_BYTES))/float64(st.Get(l7.L7StatSTAT_SPLICE_PACKETS)))
	return nil
}

// goProxy copies between the accepted connection and a new connection to
// dst in user space, as a proxy without the sockmap would (Go's io.Copy
// between TCP sockets uses splice(2)). The returned func waits for it.
func goProxy(ctx context.Context, t *testing.T, g *gwLab, a *net.TCPConn, dst netip.AddrPort) func() error {
	t.Helper()
	line, err := readLineRaw(a)
	if err != nil {
		t.Fatal(err)
	}
	bc, err := g.lab.Gateway.DialTCP(ctx, netip.Addr{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bc.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { _, err := io.Copy(bc, a); bc.CloseWrite(); done <- err }()
	go func() { _, err := io.Copy(a, bc); a.CloseWrite(); done <- err }()
	return func() error {
		defer a.Close()
		defer bc.Close()
		for range 2 {
			if err := <-done; err != nil {
				return err
			}
		}
		return nil
	}
}

// bulkResult is one path's transfer.
type bulkResult struct {
	elapsed  time.Duration
	procCPU  time.Duration // this process's user+sys
	totalCPU time.Duration // every CPU's busy time (the machine is shared)
}

func (r bulkResult) rate() float64       { return bulkBytes / r.elapsed.Seconds() }
func (r bulkResult) cpuPerByte() float64 { return r.totalCPU.Seconds() / bulkBytes }

// bulk sends bulkBytes through the connection setup returns, half-closes,
// and checks the sink's count and checksum; finish runs last.
func (g *gwLab) bulk(t *testing.T, name string, setup func() (*net.TCPConn, func() error)) bulkResult {
	t.Helper()
	c, finish := setup()
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	start, cpu0, busy0 := time.Now(), cpuTime(t), machineBusy(t)
	sum, err := pushBulk(c)
	if err != nil {
		t.Fatalf("%s: send: %v", name, err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	answer, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: sink's answer: %q, %v", name, answer, err)
	}
	r := bulkResult{elapsed: time.Since(start), procCPU: cpuTime(t) - cpu0, totalCPU: machineBusy(t) - busy0}
	if want := fmt.Sprintf("%d %08x\n", bulkBytes, sum); answer != want {
		t.Errorf("%s: the sink read %q, want %q", name, answer, want)
	}
	if err := finish(); err != nil {
		t.Errorf("%s: %v", name, err)
	}
	t.Logf("%s: 1 GiB in %v: %.2f Gbit/s; CPU: this process %v, whole machine %v",
		name, r.elapsed.Round(time.Millisecond), r.rate()*8/1e9, r.procCPU.Round(time.Millisecond), r.totalCPU.Round(10*time.Millisecond))
	return r
}

// pushBulk writes bulkBytes of pseudo-random data, each 1 MiB chunk
// numbered, and returns its CRC-32C.
func pushBulk(c *net.TCPConn) (uint32, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	rng := rand.New(rand.NewPCG(22, 7))
	for i := 0; i < chunk; i += 8 {
		binary.LittleEndian.PutUint64(buf[i:], rng.Uint64())
	}
	var sum uint32
	for i := range bulkBytes / chunk {
		binary.LittleEndian.PutUint64(buf, uint64(i))
		sum = crc32.Update(sum, castagnoli, buf)
		if _, err := c.Write(buf); err != nil {
			return 0, err
		}
	}
	return sum, nil
}

// machineBusy is the time every CPU spent not idle, from /proc/stat.
func machineBusy(t *testing.T) time.Duration {
	t.Helper()
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i, s := range f[1:] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if i != 3 && i != 4 && i < 8 { // not idle, iowait, guest
			busy += v
		}
	}
	return time.Duration(busy) * (time.Second / 100) // USER_HZ
}
