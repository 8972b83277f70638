package shadow_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/shadow"
)

// serve starts the test application and returns its address.
func serve(t testing.TB, h http.Handler) netip.AddrPort {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return netip.MustParseAddrPort(strings.TrimPrefix(srv.URL, "http://"))
}

// shadowRun reads a capture of 220 GETs and 11 POSTs and replays it to h.
func shadowRun(t *testing.T, h http.Handler, opts shadow.Options) shadow.Report {
	t.Helper()
	c, gets := trafficCapture(11, 20)
	ex, _ := read(t, c.PcapNG(false))
	opts.Targets = append(opts.Targets, serve(t, h))
	opts.AsFastAsPossible = true
	rep, err := shadow.Run(context.Background(), ex, opts)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Found != gets+11 {
		t.Fatalf("found %d, want %d", rep.Found, gets+11)
	}
	return rep
}

// TestRunIdentical: an application that answers as recorded differs in
// nothing (JSON key order, spacing and volatile headers aside); POSTs are
// skipped and counted.
func TestRunIdentical(t *testing.T) {
	rep := shadowRun(t, app(nil), shadow.Options{})
	if rep.Compared != 220 || rep.Identical != 220 || rep.Differing != 0 || rep.Skipped[shadow.SkipMethod] != 11 {
		t.Fatalf("report %+v", rep)
	}
	if rep.Latency.Target.P50 <= 0 || rep.Latency.Recorded.P99 <= 0 {
		t.Errorf("latencies %+v", rep.Latency)
	}
}

// TestRunChangedField: a JSON field changed on 10% of the paths is
// reported on exactly those, with its path.
func TestRunChangedField(t *testing.T) {
	rep := shadowRun(t, app(func(i int, _ *int, it map[string]any) {
		if i%10 == 3 {
			it["price"] = 0
		}
	}), shadow.Options{Examples: 100})
	if rep.Compared != 220 || rep.Differing != 22 || rep.DifferingByKind[shadow.KindBody] != 22 || len(rep.Examples) != 22 {
		t.Fatalf("report %+v", rep)
	}
	for _, e := range rep.Examples {
		if !strings.HasSuffix(e.Target, "3") || e.Where != ".price" || e.Got != "0" || e.Method != "GET" {
			t.Errorf("example %+v", e)
		}
	}
	if got := rep.DifferingShare(); got != 0.1 {
		t.Errorf("share %v, want 0.1", got)
	}
}

// TestRunChangedStatus: a status changed on 10% of the paths is reported
// as a status difference on exactly those.
func TestRunChangedStatus(t *testing.T) {
	rep := shadowRun(t, app(func(i int, status *int, _ map[string]any) {
		if i%10 == 7 {
			*status = http.StatusServiceUnavailable
		}
	}), shadow.Options{Examples: 3})
	if rep.Differing != 22 || rep.DifferingByKind[shadow.KindStatus] != 22 || len(rep.Examples) != 3 {
		t.Fatalf("report %+v", rep)
	}
	if e := rep.Examples[0]; e.Target != "/items/7" || e.Recorded != "200" || e.Got != "503" {
		t.Errorf("example %+v", e)
	}
}

// TestRunHeaders: a new header differs unless ignored; POSTs are
// replayed when named.
func TestRunHeaders(t *testing.T) {
	h := app(nil)
	tagged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Version", "v2")
		h.ServeHTTP(w, r)
	})
	rep := shadowRun(t, tagged, shadow.Options{})
	if rep.Differing != 220 || rep.DifferingByKind[shadow.KindHeader] != 220 || rep.Examples[0].Where != "X-Version" {
		t.Fatalf("report %+v", rep)
	}
	rep = shadowRun(t, tagged, shadow.Options{IgnoreHeaders: []string{"x-version"}, Methods: []string{"get", "POST"}})
	// The POSTs are answered 404 instead of 201.
	if rep.Compared != 231 || rep.Differing != 11 || rep.DifferingByKind[shadow.KindStatus] != 11 || rep.Skipped[shadow.SkipMethod] != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// TestRunUnreachable: a target that refuses is an error difference, and
// requests stick to a target by their client.
func TestRunUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := netip.MustParseAddrPort(ln.Addr().String())
	ln.Close()
	rep := shadowRun(t, app(nil), shadow.Options{Targets: []netip.AddrPort{dead}})
	if rep.Compared != 220 || rep.DifferingByKind[shadow.KindError] == 0 || rep.Identical == 0 {
		t.Fatalf("report %+v", rep)
	}
	perClient := map[string]string{}
	for _, e := range rep.Examples {
		if to, seen := perClient[e.Client]; seen && to != e.To {
			t.Errorf("client %s went to %s and %s", e.Client, to, e.To)
		}
		perClient[e.Client] = e.To
	}
}

// TestRunUDP: datagrams are replayed and their answers compared.
func TestRunUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			answer := bytes.ToUpper(buf[:n])
			if string(buf[:n]) == "q9" {
				answer = []byte("changed")
			}
			pc.WriteTo(answer, from)
		}
	}()
	ex := make([]shadow.Exchange, 10)
	for i := range ex {
		q := []byte{'q', byte('0' + i)}
		ex[i] = shadow.Exchange{Protocol: shadow.UDP, Client: client(i), Server: server, At: time.Unix(0, int64(i)*int64(time.Millisecond)),
			Request: shadow.Request{Body: q, Raw: q}, Response: &shadow.Response{Body: bytes.ToUpper(q)}}
	}
	to := netip.MustParseAddrPort(pc.LocalAddr().String())
	rep, err := shadow.Run(context.Background(), ex, shadow.Options{Targets: []netip.AddrPort{to}, Speed: 10})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Compared != 10 || rep.Differing != 1 || rep.Examples[0].Got != "changed" {
		t.Fatalf("report %+v", rep)
	}
}

// TestRunOptions: bad options are errors before anything is sent.
func TestRunOptions(t *testing.T) {
	to := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}
	for _, o := range []shadow.Options{{}, {Targets: to, Speed: -1}, {Targets: []netip.AddrPort{{}}}} {
		if _, err := shadow.Run(context.Background(), nil, o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
