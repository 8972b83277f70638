package agent_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/labagent"
	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/internal/testenv"
	"github.com/graylane/graylane/pkg/api"
	"github.com/graylane/graylane/pkg/gtpu"
	"github.com/graylane/graylane/pkg/service"
)

// startCapture asks the agent for a capture of svc into a file; the
// capture samples from when this returns. The channel gets the copy's
// result when the capture ends.
func startCapture(t *testing.T, e *env, svc string, q api.CaptureRequest) (string, <-chan error) {
	t.Helper()
	rc, err := e.agent.Client().Capture(e.ctx, svc, q)
	if err != nil {
		t.Fatalf("capture %s: %v", svc, err)
	}
	path := filepath.Join(t.TempDir(), svc+".pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		defer rc.Close()
		_, err := io.Copy(f, rc)
		done <- errors.Join(err, f.Close())
	}()
	return path, done
}

// tshark reads a capture with tshark: the fields of the packets that pass
// filter, one slice per packet.
func tshark(t *testing.T, path, filter string, fields ...string) [][]string {
	t.Helper()
	bin := testenv.RequireTool(t, "tshark", "tshark")
	args := []string{"-n", "-r", path, "-T", "fields", "-E", "separator=|"}
	if filter != "" {
		args = append(args, "-Y", filter)
	}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("tshark %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var rows [][]string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rows = append(rows, strings.Split(sc.Text(), "|"))
	}
	return rows
}

// captureStats reads a capture's packets and its interfaces' final
// statistics (seen, dropped), by pcapgo.
func captureStats(t *testing.T, path string) (packets int, seen, dropped uint64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := pcapgo.DefaultNgReaderOptions
	opts.StatisticsCallback = func(_ int, s pcapgo.NgInterfaceStatistics) {
		seen, dropped = s.PacketsReceived, s.PacketsDropped
	}
	r, err := pcapgo.NewNgReader(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return packets, seen, dropped
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		packets++
	}
}

// timedRequest is one HTTP request of the client, with the kernel's time
// of sending it (SO_TIMESTAMPING, software, at the client's device).
type timedRequest struct {
	port   uint16
	sentAt time.Time
}

// requestTimed opens a connection to vip, sends GET / with the kernel
// stamping its transmission, reads the response (which must be a 200) and
// returns the stamp.
func requestTimed(e *env, vip netip.AddrPort) (timedRequest, error) {
	c, err := e.lab.Client.DialTCP(e.ctx, netip.Addr{}, vip)
	if err != nil {
		return timedRequest{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	raw, err := c.SyscallConn()
	if err != nil {
		return timedRequest{}, err
	}
	const flags = unix.SOF_TIMESTAMPING_TX_SOFTWARE | unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_TSONLY
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPING, flags) })
	if serr != nil {
		return timedRequest{}, fmt.Errorf("SO_TIMESTAMPING: %w", serr)
	}
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"); err != nil {
		return timedRequest{}, err
	}
	resp, err := io.ReadAll(c)
	if err != nil || !bytes.HasPrefix(resp, []byte("HTTP/1.1 200")) {
		return timedRequest{}, fmt.Errorf("response %q: %v", resp, err)
	}
	at, err := txStamp(raw)
	return timedRequest{port: uint16(c.LocalAddr().(*net.TCPAddr).Port), sentAt: at}, err
}

// txStamp reads the software transmit timestamp from the socket's error
// queue.
func txStamp(raw syscall.RawConn) (time.Time, error) {
	var at time.Time
	var rerr error
	oob := make([]byte, 512)
	deadline := time.Now().Add(time.Second)
	for at.IsZero() && time.Now().Before(deadline) {
		raw.Control(func(fd uintptr) {
			_, oobn, _, _, err := unix.Recvmsg(int(fd), nil, oob, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
			if err != nil {
				rerr = err
				return
			}
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				rerr = err
				return
			}
			for _, m := range msgs {
				if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPING && len(m.Data) >= 16 {
					sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
					nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
					at = time.Unix(sec, nsec)
				}
			}
		})
		if at.IsZero() {
			time.Sleep(time.Millisecond)
		}
	}
	if at.IsZero() {
		return at, fmt.Errorf("no transmit timestamp: %v", rerr)
	}
	return at, nil
}

// epoch reads tshark's frame.time_epoch.
func epoch(t *testing.T, s string) time.Time {
	t.Helper()
	sec, frac, _ := strings.Cut(s, ".")
	si, err1 := strconv.ParseInt(sec, 10, 64)
	frac = (frac + "000000000")[:9]
	ni, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("frame.time_epoch %q", s)
	}
	return time.Unix(si, ni)
}

// TestCaptureHTTP captures 100 % of an HTTP service, whole packets, while
// a client makes 200 requests, one connection each: tshark reads the
// pcapng and sees every SYN the client sent and every response; the
// timestamps never go back; the gaps between the client's requests in
// the capture are the gaps between the kernel's own transmit stamps of
// them (SO_TIMESTAMPING) within the bound stated below; the statistics
// add up (written + dropped = seen) and seen is the kernel's count.
func TestCaptureHTTP(t *testing.T) {
	e := setup(t, netlab.Config{}, "tc")
	if err := e.lab.StartHTTP(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
	svc := web("http", e.lab, netlab.VIP4, 80, netlab.HTTPPort, service.TCP, 5000)
	if err := e.agent.Apply(e.ctx, []service.Service{svc}); err != nil {
		t.Fatal(err)
	}
	before := e.mirrorStats(t, svc)
	path, done := startCapture(t, e, "http", api.CaptureRequest{Percent: "100%", Duration: 5 * time.Second, Payload: true})
	const n = 200
	var reqs []timedRequest
	for range n {
		r, err := requestTimed(e, netip.AddrPortFrom(netlab.VIP4, 80))
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, r)
		time.Sleep(5 * time.Millisecond)
	}
	// The capture still runs (5 s): the status says so.
	if st, err := e.agent.Client().Status(e.ctx, "http"); err != nil || len(st.Services) != 1 || st.Services[0].Nodes[0].Captures != 1 {
		t.Errorf("status during the capture: %+v (%v), want 1 capture on the node", st, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("capture stream: %v", err)
	}
	after := e.mirrorStats(t, svc)

	syns := map[string]bool{}
	for _, row := range tshark(t, path, "tcp.flags.syn==1 && tcp.flags.ack==0", "tcp.srcport") {
		syns[row[0]] = true
	}
	responses := tshark(t, path, "http.response", "http.response.code")
	sentAt := map[string]time.Time{}
	for _, r := range reqs {
		if !syns[strconv.Itoa(int(r.port))] {
			t.Errorf("the SYN of client port %d is not in the capture", r.port)
		}
		sentAt[strconv.Itoa(int(r.port))] = r.sentAt
	}
	if len(responses) != n {
		t.Errorf("tshark sees %d HTTP responses, the client got %d", len(responses), n)
	}
	var last time.Time
	for i, row := range tshark(t, path, "", "frame.time_epoch") {
		if at := epoch(t, row[0]); at.Before(last) {
			t.Errorf("packet %d at %v, before the one ahead of it (%v)", i+1, at, last)
		} else {
			last = at
		}
	}
	checkGaps(t, tshark(t, path, "http.request", "frame.time_epoch", "tcp.srcport"), sentAt)

	packets, seen, dropped := captureStats(t, path)
	kernelSeen := (after.Captured + after.CaptureDropped) - (before.Captured + before.CaptureDropped)
	if uint64(packets)+dropped != seen || seen != kernelSeen {
		t.Errorf("capture: %d written + %d dropped, seen %d; the kernel sampled %d", packets, dropped, seen, kernelSeen)
	}
	t.Logf("capture: %d packets, %d dropped, seen %d (kernel %d); %d SYNs, %d responses", packets, dropped, seen, kernelSeen, len(syns), len(responses))
	checkCtlPipe(t, e)
}

// checkCtlPipe: `graylanectl capture http --count 20 -w - | tshark -r -`
// under a light load reads 20 packets.
func checkCtlPipe(t *testing.T, e *env) {
	t.Helper()
	bin, err := ctl.Path()
	if err != nil {
		t.Fatal(err)
	}
	tsharkBin := testenv.RequireTool(t, "tshark", "tshark")
	load := e.lab.Client.StartHTTPLoad(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), 50)
	defer load.Stop()
	pipe := fmt.Sprintf("%s --server unix://%s capture http --percent 100%% --count 20 --duration 30s -w - | %s -n -r - -T fields -e frame.number",
		bin, e.agent.SocketPath(), tsharkBin)
	out, err := exec.CommandContext(e.ctx, "bash", "-o", "pipefail", "-c", pipe).Output()
	if err != nil {
		t.Fatalf("%s: %v", pipe, err)
	}
	if lines := strings.Fields(string(out)); len(lines) != 20 {
		t.Errorf("graylanectl capture -w - | tshark -r - read %d packets, want 20:\n%s", len(lines), out)
	}
}

// gapBound is how far a gap between two requests in the capture may be
// from the gap between their transmit stamps: the capture's clock is the
// kernel's monotonic one converted to wall time (±1 µs, capture.Clock),
// the client's stamp is taken at its device, the capture's one veth hop
// later at the gateway's tc hook; on a loaded 2-core machine that hop may
// wait for a softirq.
const gapBound = 200 * time.Microsecond

func checkGaps(t *testing.T, rows [][]string, sentAt map[string]time.Time) {
	t.Helper()
	var diffs []time.Duration
	var first, firstSent time.Time
	for _, row := range rows {
		at, sent := epoch(t, row[0]), sentAt[row[1]]
		if sent.IsZero() {
			continue
		}
		if first.IsZero() {
			first, firstSent = at, sent
			continue
		}
		d := at.Sub(first) - sent.Sub(firstSent)
		diffs = append(diffs, max(d, -d))
	}
	if len(diffs) < len(sentAt)-1 {
		t.Errorf("%d of %d requests in the capture", len(diffs)+1, len(sentAt))
	}
	if len(diffs) == 0 {
		return
	}
	slices.Sort(diffs)
	p50, p99, worst := diffs[len(diffs)/2], diffs[len(diffs)*99/100], diffs[len(diffs)-1]
	t.Logf("gaps in the capture vs the client's transmit stamps: median %v, p99 %v, max %v (bound %v)", p50, p99, worst, gapBound)
	if p99 > gapBound {
		t.Errorf("gaps differ from the client's by up to %v (p99 %v), bound %v", worst, p99, gapBound)
	}
}

// TestCaptureGTPU captures a GTP-U service keyed by the inner (UE)
// address, headers only (the default) and redacted: tshark decodes every
// packet down to the inner IP header, cut after it (the payload is not
// kept); the UE addresses are replaced by pseudonyms, one per UE (prefix
// preserving), the VIP kept; every checksum still verifies.
func TestCaptureGTPU(t *testing.T) {
	e := setup(t, netlab.Config{}, "tc")
	upf := web("upf", e.lab, netlab.VIP4, gtpu.Port, netlab.GTPUPort, service.UDP, 5000)
	upf.Key = service.KeyGTPUInner
	if err := e.agent.Apply(e.ctx, []service.Service{upf}); err != nil {
		t.Fatal(err)
	}
	path, done := startCapture(t, e, "upf", api.CaptureRequest{Percent: "100%", Count: 40, Redact: true})
	conn, err := e.lab.Client.DialUDP(e.ctx, netlab.Client4, netip.AddrPortFrom(netlab.VIP4, gtpu.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ues := map[string]bool{}
	for i := range 20 {
		ue := netip.AddrFrom4([4]byte{10, 46, 0, byte(1 + i%4)})
		ues[ue.String()] = true
		pkt := gtpu.AppendGPDU(nil, 42, gtpu.Options{}, gtpu.AppendIP(nil, ue, netip.MustParseAddr("192.0.2.1"), []byte("subscriber payload")))
		conn.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Read(make([]byte, 2048)); err != nil {
			t.Fatalf("UE %s: no answer: %v", ue, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("capture stream: %v", err)
	}
	rows := tshark(t, path, "", "gtp.teid", "ip.src", "ip.dst", "frame.len", "frame.cap_len")
	if len(rows) != 40 {
		t.Fatalf("tshark reads %d packets, want 40", len(rows))
	}
	pseudonyms := map[string]bool{}
	for _, r := range rows {
		src, dst := strings.Split(r[1], ","), strings.Split(r[2], ",")
		if r[0] == "" || len(src) != 2 || len(dst) != 2 {
			t.Fatalf("not decoded down to the inner packet: %v", r)
		}
		ue := src[1]
		if dst[0] != netlab.VIP4.String() {
			ue = dst[1]
		}
		if ues[ue] {
			t.Errorf("UE address %s left in the capture", ue)
		}
		pseudonyms[ue] = true
		if r[0] != "0x0000002a" || (src[0] != netlab.VIP4.String() && dst[0] != netlab.VIP4.String()) {
			t.Errorf("outer header %v: want TEID 42 and the VIP kept", r)
		}
		if full, kept := r[3], r[4]; kept == full {
			t.Errorf("a packet of %s bytes kept whole; headers only keeps %s", full, kept)
		}
	}
	if len(pseudonyms) != len(ues) {
		t.Errorf("%d UEs became %d pseudonyms %v", len(ues), len(pseudonyms), pseudonyms)
	}
	bad := tshark(t, path, "ip.checksum.status==\"Bad\" || udp.checksum.status==\"Bad\"", "frame.number")
	if len(bad) > 0 {
		t.Errorf("%d packets with a bad checksum after redaction", len(bad))
	}
	checkUEFlows(t, e, ues)
}

// checkUEFlows: the flow table lists one flow per UE (port 0), each on a
// backend of the service, and only one UE's with --client.
func checkUEFlows(t *testing.T, e *env, ues map[string]bool) {
	t.Helper()
	fl, err := e.agent.Client().Flows(e.ctx, "upf", "", 100)
	if err != nil || fl.Total != len(ues) {
		t.Fatalf("flows of upf: %+v (%v), want one per UE (%d)", fl, err, len(ues))
	}
	for _, f := range fl.Flows {
		ap := netip.MustParseAddrPort(f.Client)
		if !ues[ap.Addr().String()] || ap.Port() != 0 || f.Backend == "" || f.State != "idle" {
			t.Errorf("flow %+v: want a UE's, port 0, idle, on a backend", f)
		}
	}
	one, err := e.agent.Client().Flows(e.ctx, "upf", "10.46.0.1", 100)
	if err != nil || one.Total != 1 {
		t.Errorf("flows of UE 10.46.0.1: %+v (%v), want one", one, err)
	}
}

// TestCaptureOverload gives the agent a 64 KiB capture ring and captures
// whole packets of a 16 MiB echo (TSO/GRO packets of up to 64 KiB): the
// ring overflows, and the drops are counted exactly (written + dropped =
// seen = the kernel's count of sampled packets), while the echo itself is
// untouched.
func TestCaptureOverload(t *testing.T) {
	e := setupWith(t, netlab.Config{}, labagent.Options{Mode: "tc", Extra: "captureRing: 65536\n"})
	bulk := web("bulk", e.lab, netlab.VIP4, 81, netlab.EchoPort, service.TCP, 0)
	if err := e.agent.Apply(e.ctx, []service.Service{bulk}); err != nil {
		t.Fatal(err)
	}
	before := e.mirrorStats(t, bulk)
	path, done := startCapture(t, e, "bulk", api.CaptureRequest{Percent: "100%", Duration: 4 * time.Second, Payload: true})
	const n = 16 << 20
	echoed, err := echoBulk(e, netip.AddrPortFrom(netlab.VIP4, 81), n)
	if err != nil || echoed < n {
		t.Fatalf("echo: %d of %d bytes back: %v", echoed, n, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("capture stream: %v", err)
	}
	after := e.mirrorStats(t, bulk)
	packets, seen, dropped := captureStats(t, path)
	kernelSeen := (after.Captured + after.CaptureDropped) - (before.Captured + before.CaptureDropped)
	t.Logf("capture: %d written + %d dropped = %d seen; the kernel: %d sampled, %d dropped by the full ring", packets, dropped, seen, kernelSeen, after.CaptureDropped-before.CaptureDropped)
	if uint64(packets)+dropped != seen || seen != kernelSeen {
		t.Errorf("the counts do not add up")
	}
	if after.CaptureDropped == before.CaptureDropped {
		t.Errorf("the ring never overflowed: the test did not test drops")
	}
}

// TestCaptureBadInput: a capture asked for with a bad percent, count,
// snaplen with payload, an unknown node or service gets a 4xx naming
// what is wrong, and starts nothing; a mirror to a bad interface name is
// refused and the state is unchanged.
func TestCaptureBadInput(t *testing.T) {
	e := setup(t, netlab.Config{}, "tc")
	svc := web("web", e.lab, netlab.VIP4, 80, netlab.HelloPort, service.TCP, 0)
	if err := e.agent.Apply(e.ctx, []service.Service{svc}); err != nil {
		t.Fatal(err)
	}
	c := e.agent.Client()
	for _, tc := range []struct {
		svc    string
		q      api.CaptureRequest
		status int
		want   string
	}{
		{"web", api.CaptureRequest{Percent: "150%", Duration: time.Second}, 400, "percent"},
		{"web", api.CaptureRequest{Percent: "1%", Duration: 2 * time.Hour}, 400, "duration"},
		{"web", api.CaptureRequest{Percent: "1%", Snaplen: 128, Payload: true}, 400, "snaplen"},
		{"web", api.CaptureRequest{Percent: "1%", Node: "nope"}, 404, "nope"},
		{"nothere", api.CaptureRequest{Percent: "1%"}, 404, "nothere"},
	} {
		rc, err := c.Capture(e.ctx, tc.svc, tc.q)
		var ae *api.Error
		if err == nil {
			rc.Close()
			t.Errorf("capture %s %+v: started, want a %d", tc.svc, tc.q, tc.status)
		} else if !errors.As(err, &ae) || ae.Status != tc.status || !strings.Contains(ae.Message, tc.want) {
			t.Errorf("capture %s %+v: %v, want a %d naming %q", tc.svc, tc.q, err, tc.status, tc.want)
		}
	}
	st := e.mirrorStats(t, svc)
	if st.Captured+st.CaptureDropped != 0 {
		t.Errorf("a refused capture sampled %d packets", st.Captured)
	}
	_, err := c.SetMirror(e.ctx, "web", api.MirrorRequest{Percent: "1%", To: "bad/if"}, api.WriteOptions{})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "to") {
		t.Errorf("mirror to bad/if: %v, want a 400 naming to", err)
	}
	got, err := c.Service(e.ctx, "web")
	if err != nil || got.Mirror != nil {
		t.Errorf("after the refused mirror the service has mirror %+v (%v)", got.Mirror, err)
	}
	checkMissingMirror(t, e, c)
}

// checkMissingMirror: a mirror to an interface this node does not have is
// accepted (another node may have it); the node says so in the status
// and keeps steering.
func checkMissingMirror(t *testing.T, e *env, c *api.Client) {
	t.Helper()
	if _, err := c.SetMirror(e.ctx, "web", api.MirrorRequest{Percent: "100%", To: "glnone0"}, api.WriteOptions{WaitApplied: true, Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("mirror to glnone0: %v", err)
	}
	st, err := c.Status(e.ctx, "web")
	if err != nil || len(st.Services) != 1 || len(st.Services[0].Nodes) != 1 {
		t.Fatalf("status: %+v (%v)", st, err)
	}
	if p := st.Services[0].Nodes[0].MirrorProblem; !strings.Contains(p, "glnone0") {
		t.Errorf("the node's mirror problem is %q, want one naming glnone0", p)
	}
	if m := st.Services[0].Nodes[0].Mirror; m != "100% → glnone0" {
		t.Errorf("the node's mirror is %q, want 100%% → glnone0", m)
	}
	if _, err := e.lab.Client.Hello(e.ctx, netip.AddrPortFrom(netlab.VIP4, 80), netip.Addr{}); err != nil {
		t.Errorf("the service stopped steering: %v", err)
	}
}
