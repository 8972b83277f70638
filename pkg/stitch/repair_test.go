//go:build linux

package stitch

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/testenv"
)

// enterNetns moves the calling goroutine, locked to its thread, into a new
// network namespace with lo up, so that the sockets it creates live there
// and never in the host's namespace. The returned function moves the
// thread back; if that fails the thread stays locked and dies with the
// goroutine. The namespace goes away with its last socket.
func enterNetns(t *testing.T) (restore func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		t.Fatal(err)
	}
	restore = func() {
		err := netns.Set(orig)
		ns.Close()
		orig.Close()
		if err != nil {
			t.Errorf("back to the original namespace: %v", err)
			return
		}
		runtime.UnlockOSThread()
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		restore()
		t.Fatalf("lo up: %v", err)
	}
	return restore
}

// tcpPair returns both ends of a loopback connection: a dialed, b
// accepted. It must run on the goroutine that called enterNetns.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.DialTCP("tcp4", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

// send writes n bytes from w and reads them all at r.
func send(t *testing.T, w, r *net.TCPConn, n int) {
	t.Helper()
	data := bytes.Repeat([]byte("stitch!"), n/7+1)[:n]
	errc := make(chan error, 1)
	go func() {
		_, err := w.Write(data)
		errc <- err
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(r, got); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write %d bytes: %v", n, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("%d bytes read differ from those written", n)
	}
}

// waitQuiet waits, for two seconds at most, until every c is quiet.
func waitQuiet(t *testing.T, cs ...*net.TCPConn) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for _, c := range cs {
		for {
			q, err := Quiet(c)
			if err != nil {
				t.Fatal(err)
			}
			if q {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not quiet after 2s", connName(c))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

func freeze(t *testing.T, c *net.TCPConn) SocketState {
	t.Helper()
	st, err := Freeze(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	return st
}

// checkPair checks the states of the two ends of one quiet connection
// against each other.
func checkPair(t *testing.T, a, b SocketState) {
	t.Helper()
	if a.Local != b.Remote || a.Remote != b.Local {
		t.Errorf("addresses: a %s->%s, b %s->%s", a.Local, a.Remote, b.Local, b.Remote)
	}
	if a.SndNxt != b.RcvNxt || a.RcvNxt != b.SndNxt {
		t.Errorf("views disagree: a snd_nxt %d rcv_nxt %d, b snd_nxt %d rcv_nxt %d",
			a.SndNxt, a.RcvNxt, b.SndNxt, b.RcvNxt)
	}
	if a.SndWscale != b.RcvWscale || a.RcvWscale != b.SndWscale {
		t.Errorf("window scales disagree: a snd %d rcv %d, b snd %d rcv %d",
			a.SndWscale, a.RcvWscale, b.SndWscale, b.RcvWscale)
	}
	for _, s := range []SocketState{a, b} {
		if !s.Timestamps || !s.SACK || !s.WindowScaling {
			t.Errorf("%s: timestamps %v, SACK %v, window scaling %v; Linux loopback defaults are all on",
				s.Local, s.Timestamps, s.SACK, s.WindowScaling)
		}
		if s.RcvWscale == 0 || s.MSS == 0 {
			t.Errorf("%s: rcv_wscale %d, mss %d; want both > 0", s.Local, s.RcvWscale, s.MSS)
		}
		if s.Unread != 0 || s.Unacked != 0 || s.Unsent != 0 {
			t.Errorf("%s: unread %d, unacked %d, unsent %d; want all 0", s.Local, s.Unread, s.Unacked, s.Unsent)
		}
	}
}

// TestFreezeThawSequence: the two ends of a quiet loopback connection,
// frozen, agree on each other's sequence numbers and options; thawed, the
// connection goes on, and frozen again its numbers have moved by exactly
// the bytes sent in between.
func TestFreezeThawSequence(t *testing.T) {
	testenv.RequirePrivileges(t)
	defer enterNetns(t)()
	a, b := tcpPair(t)
	send(t, a, b, 100_000)
	send(t, b, a, 5_000)
	waitQuiet(t, a, b)
	a1, b1 := freeze(t, a), freeze(t, b)
	checkPair(t, a1, b1)

	for _, c := range []*net.TCPConn{a, b} {
		if err := Thaw(c); err != nil {
			t.Fatal(err)
		}
	}
	send(t, a, b, 1234)
	waitQuiet(t, a, b)
	time.Sleep(50 * time.Millisecond) // for the millisecond timestamp clocks to move
	a2, b2 := freeze(t, a), freeze(t, b)
	checkPair(t, a2, b2)
	if d := a2.SndNxt - a1.SndNxt; d != 1234 {
		t.Errorf("a's snd_nxt moved by %d, want 1234", d)
	}
	if d := b2.RcvNxt - b1.RcvNxt; d != 1234 {
		t.Errorf("b's rcv_nxt moved by %d, want 1234", d)
	}
	if a2.RcvNxt != a1.RcvNxt || b2.SndNxt != b1.SndNxt {
		t.Errorf("b sent nothing, yet a's rcv_nxt %d->%d, b's snd_nxt %d->%d",
			a1.RcvNxt, a2.RcvNxt, b1.SndNxt, b2.SndNxt)
	}
	for _, d := range []uint32{a2.TSClock - a1.TSClock, b2.TSClock - b1.TSClock} {
		if d < 50 || d > 5000 {
			t.Errorf("a timestamp clock moved by %d over 50ms or more; want a millisecond clock", d)
		}
	}
	for _, c := range []*net.TCPConn{a, b} {
		if err := Thaw(c); err != nil {
			t.Fatal(err)
		}
	}
	send(t, b, a, 10) // thawed, the connection still works both ways
}

// TestCloseSilently: a live socket is not closed silently; a frozen one
// is, and its peer sees neither EOF nor reset.
func TestCloseSilently(t *testing.T) {
	testenv.RequirePrivileges(t)
	defer enterNetns(t)()
	a, b := tcpPair(t)
	send(t, a, b, 3000)

	if err := CloseSilently(a); err == nil {
		t.Fatal("CloseSilently closed a live socket")
	} else {
		t.Logf("live socket: %v", err)
	}
	send(t, a, b, 10) // still open
	send(t, b, a, 10)

	waitQuiet(t, a, b)
	freeze(t, a)
	before := outSegs(t)
	if err := CloseSilently(a); err != nil {
		t.Fatal(err)
	}
	if err := b.SetReadDeadline(time.Now().Add(300 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	n, err := b.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("peer of a silently closed socket: read %d bytes, err %v; want a timeout", n, err)
	}
	if after := outSegs(t); after != before {
		t.Errorf("the namespace sent %d segments while a closed silently and b waited", after-before)
	}
	info, err := tcpInfo(b)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != unix.BPF_TCP_ESTABLISHED {
		t.Errorf("peer's state %d, want ESTABLISHED (%d)", info.State, unix.BPF_TCP_ESTABLISHED)
	}
}

// TestQuietUnread: bytes waiting in the receive queue make a socket not
// quiet, and Freeze reports them.
func TestQuietUnread(t *testing.T) {
	testenv.RequirePrivileges(t)
	defer enterNetns(t)()
	a, b := tcpPair(t)
	if _, err := a.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	waitQuiet(t, a) // acknowledged by b's kernel, not read by b
	q, err := Quiet(b)
	if err != nil {
		t.Fatal(err)
	}
	if q {
		t.Fatal("Quiet with 10 bytes unread")
	}
	st := freeze(t, b)
	if st.Unread != 10 {
		t.Errorf("Unread %d, want 10", st.Unread)
	}
	if err := Thaw(b); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(b, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	waitQuiet(t, b)
}

// outSegs returns the segments TCP has sent in the calling thread's
// network namespace (Tcp OutSegs of /proc/thread-self/net/snmp, which
// counts RSTs too).
func outSegs(t *testing.T) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/net/snmp")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || fields[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i, name := range names {
			if name == "OutSegs" && i < len(fields) {
				n, err := strconv.ParseUint(fields[i], 10, 64)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
	}
	t.Fatal("no Tcp OutSegs in /proc/thread-self/net/snmp")
	return 0
}

func tcpInfo(c *net.TCPConn) (*unix.TCPInfo, error) {
	var info *unix.TCPInfo
	err := control(c, func(fd int) error {
		var err error
		info, err = unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err
	})
	return info, err
}

// TestRepairTCPInfoLayout: the wscale byte Freeze reads from unix.TCPInfo's
// padding is where the kernel's struct tcp_info has it, right after
// tcpi_options and before the aligned tcpi_rto.
func TestRepairTCPInfoLayout(t *testing.T) {
	var info unix.TCPInfo
	if off := unsafe.Offsetof(info.Options); off != tcpInfoWscaleOffset-1 {
		t.Errorf("Options at %d, want %d", off, tcpInfoWscaleOffset-1)
	}
	if off := unsafe.Offsetof(info.Rto); off != 8 {
		t.Errorf("Rto at %d, want 8 (the wscale byte and a flags byte before it)", off)
	}
}

func TestRepairSplitWscale(t *testing.T) {
	for _, tc := range []struct {
		b        byte
		little   bool
		snd, rcv uint8
	}{
		{0x97, true, 7, 9},
		{0x97, false, 9, 7},
		{0x0e, true, 14, 0},
		{0x00, true, 0, 0},
	} {
		snd, rcv := splitWscale(tc.b, tc.little)
		if snd != tc.snd || rcv != tc.rcv {
			t.Errorf("splitWscale(%#x, little %v) = %d, %d; want %d, %d", tc.b, tc.little, snd, rcv, tc.snd, tc.rcv)
		}
	}
}
