package shadow_test

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/shadowtest"
	"github.com/graylane/graylane/pkg/shadow"
)

func read(t *testing.T, data []byte) ([]shadow.Exchange, shadow.ReadStats) {
	t.Helper()
	ex, stats, err := shadow.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return ex, stats
}

// TestReadKeepAlivePipelined: sequential and pipelined requests on
// keep-alive connections, chunked and Content-Length responses, from pcap
// and pcapng alike.
func TestReadKeepAlivePipelined(t *testing.T) {
	c, gets := trafficCapture(4, 5)
	for name, data := range map[string][]byte{"pcap": c.Pcap(false), "pcapng": c.PcapNG(false)} {
		t.Run(name, func(t *testing.T) {
			ex, stats := read(t, data)
			if len(ex) != gets+4 || stats.HTTP != gets+4 || stats.TCPStreams != 4 || stats.Unanswered != 0 {
				t.Fatalf("%d exchanges, stats %+v; want %d", len(ex), stats, gets+4)
			}
			posts := 0
			for _, e := range ex {
				if e.Response == nil || e.Server != server || e.Latency < 0 {
					t.Fatalf("exchange %+v", e)
				}
				if e.Request.Method == "POST" {
					posts++
					if string(e.Request.Body) != `{"a":1}` || e.Response.Status != 201 {
						t.Errorf("POST %q → %d", e.Request.Body, e.Response.Status)
					}
					continue
				}
				if !strings.Contains(string(e.Response.Body), `"name": "item-`) || e.Response.Status != 200 {
					t.Errorf("%s → %d %q", e.Request.Target, e.Response.Status, e.Response.Body)
				}
			}
			if posts != 4 {
				t.Errorf("%d POSTs, want 4", posts)
			}
			// The first connection is sequential: the answer came 2ms after the request.
			if ex[0].Latency < 2*time.Millisecond || ex[0].Latency > 3*time.Millisecond {
				t.Errorf("latency %v, want 2ms and a few segments", ex[0].Latency)
			}
		})
	}
}

// TestReadReorderedSegments: segments out of order, retransmitted and
// overlapping reassemble into the bytes sent, and the request's time is
// its first byte's first arrival.
func TestReadReorderedSegments(t *testing.T) {
	c := shadowtest.New()
	k := c.Dial(client(1), server)
	body := bytes.Repeat([]byte("0123456789"), 500)
	req := append([]byte("PUT /blob HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n"), body...)
	k.SendSegments(true, req, 700, 1, 0, 3, 2, 2, 4, 6, 5, 7, 7)
	c.Advance(time.Millisecond)
	resp := append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n"), body...)
	k.SendSegments(false, resp, 300, 0, 2, 1, 1, 3, 5, 4, 6, 8, 7, 9, 10, 11, 12, 13, 14, 16, 15)
	ex, stats := read(t, c.Pcap(false))
	if len(ex) != 1 || stats.Gaps != 0 {
		t.Fatalf("%d exchanges, stats %+v", len(ex), stats)
	}
	e := ex[0]
	if e.Request.Method != "PUT" || !bytes.Equal(e.Request.Body, body) || !bytes.Equal(e.Response.Body, body) || !bytes.Equal(e.Request.Raw, req) {
		t.Fatalf("request %s %d bytes, response %d bytes", e.Request.Method, len(e.Request.Body), len(e.Response.Body))
	}
}

// TestReadBodiless: HEAD, 204 and 304 have no body, whatever their
// headers say, and 100 Continue is not the answer.
func TestReadBodiless(t *testing.T) {
	c := shadowtest.New()
	k := c.Dial(client(2), server)
	k.Send([]byte("HEAD /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n\r\nPOST /d HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi"))
	k.Reply([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n" +
		"HTTP/1.1 204 No Content\r\n\r\n" +
		"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n" +
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	ex, _ := read(t, c.PcapNG(false))
	want := []struct {
		target string
		status int
		body   string
	}{{"/a", 200, ""}, {"/b", 204, ""}, {"/c", 304, ""}, {"/d", 200, "ok"}}
	if len(ex) != len(want) {
		t.Fatalf("%d exchanges, want %d", len(ex), len(want))
	}
	for i, w := range want {
		if ex[i].Request.Target != w.target || ex[i].Response.Status != w.status || string(ex[i].Response.Body) != w.body {
			t.Errorf("%s → %d %q, want %s → %d %q", ex[i].Request.Target, ex[i].Response.Status, ex[i].Response.Body, w.target, w.status, w.body)
		}
	}
}

// TestReadUDP: each datagram of the client is answered by the server's
// next one; an unanswered one is counted.
func TestReadUDP(t *testing.T) {
	c := shadowtest.New()
	dns := netip.MustParseAddrPort("[fd00::53]:53")
	cl := netip.MustParseAddrPort("[fd00:9::1]:5353")
	c.UDP(cl, dns, []byte("q1"))
	c.Advance(time.Millisecond)
	c.UDP(dns, cl, []byte("a1"))
	c.UDP(cl, dns, []byte("q2"))
	c.UDP(cl, dns, []byte("q3"))
	c.Advance(3 * time.Millisecond)
	c.UDP(dns, cl, []byte("a2"))
	ex, stats := read(t, c.Pcap(false))
	if len(ex) != 3 || stats.UDP != 3 || stats.Unanswered != 1 {
		t.Fatalf("%d exchanges, stats %+v", len(ex), stats)
	}
	if string(ex[0].Response.Body) != "a1" || ex[0].Latency != time.Millisecond || string(ex[1].Response.Body) != "a2" || ex[2].Response != nil {
		t.Errorf("pairs: %+v", ex)
	}
	if ex[0].Client != cl || ex[0].Server != dns || ex[0].Protocol != shadow.UDP {
		t.Errorf("ends %v → %v %s", ex[0].Client, ex[0].Server, ex[0].Protocol)
	}
}

// TestReadHeadersOnly: a headers-only capture is ErrNoPayload, which
// says to capture with --payload.
func TestReadHeadersOnly(t *testing.T) {
	c, _ := trafficCapture(1, 2)
	for _, data := range [][]byte{c.Pcap(true), c.PcapNG(true)} {
		_, _, err := shadow.Read(bytes.NewReader(data))
		if !errors.Is(err, shadow.ErrNoPayload) || !strings.Contains(err.Error(), "--payload") {
			t.Errorf("error %v, want ErrNoPayload", err)
		}
	}
}

// TestReadBadFiles: truncated, empty and foreign files are errors that
// say what is wrong; nothing panics.
func TestReadBadFiles(t *testing.T) {
	c, _ := trafficCapture(1, 2)
	pcap := c.Pcap(false)
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"truncated":        {pcap[:len(pcap)-10], "packet 11: the file ends inside it: the capture is truncated"},
		"truncated-pcapng": {c.PcapNG(false)[:300], "truncated"},
		"empty":            {nil, "the capture file is empty"},
		"short":            {[]byte{1, 2}, "too short"},
		"text":             {[]byte("GET / HTTP/1.1\r\n\r\n"), "neither pcap nor pcapng"},
	} {
		_, _, err := shadow.Read(bytes.NewReader(tc.data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
}

func FuzzRead(f *testing.F) {
	c, _ := trafficCapture(2, 2)
	f.Add(c.Pcap(false))
	f.Add(c.PcapNG(false))
	f.Fuzz(func(t *testing.T, data []byte) {
		shadow.Read(bytes.NewReader(data))
	})
}

// TestReadCutAtWholePacketMax: a packet larger than the agent keeps is a
// gap in its stream (the exchanges before it stand), not ErrNoPayload; a
// smaller snaplen is a capture without payload.
func TestReadCutAtWholePacketMax(t *testing.T) {
	c := shadowtest.New()
	k := c.Dial(client(1), server)
	k.Send(getRequest("/small"))
	k.Reply([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	k.Send(getRequest("/big"))
	big := append([]byte("HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n"), bytes.Repeat([]byte("x"), 20000)...)
	k.SendSegments(false, big, 30000)
	other := c.Dial(client(2), server)
	other.Send(getRequest("/other"))
	other.Reply([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	c.Snaplen = shadow.WholePacketMax
	ex, stats := read(t, c.PcapNG(false))
	if stats.Cut != 1 || stats.Gaps != 1 || len(ex) != 3 || stats.Unanswered != 1 {
		t.Fatalf("%d exchanges, stats %+v", len(ex), stats)
	}
	if ex[0].Response == nil || ex[1].Response != nil || ex[2].Response == nil {
		t.Errorf("responses: %v %v %v", ex[0].Response, ex[1].Response, ex[2].Response)
	}
	c.Snaplen = 256
	if _, _, err := shadow.Read(bytes.NewReader(c.Pcap(false))); !errors.Is(err, shadow.ErrNoPayload) {
		t.Errorf("snaplen 256: %v, want ErrNoPayload", err)
	}
}

// TestReadWithoutHandshake: a capture that begins inside a connection
// tells the client by the request line; a stream neither side of which is
// HTTP/1.x is counted and ignored.
func TestReadWithoutHandshake(t *testing.T) {
	c := shadowtest.New()
	k := c.Dial(client(1), server)
	k.Send(getRequest("/a"))
	k.Reply(recordedItem(1, false))
	tls := c.Dial(client(2), netip.MustParseAddrPort("10.0.0.10:443"))
	tls.Send([]byte{0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5})
	tls.Reply([]byte{0x16, 3, 3, 0, 1, 9})
	c.Drop(0, 1, 2, 5, 6, 7) // both handshakes
	ex, stats := read(t, c.Pcap(false))
	if len(ex) != 1 || ex[0].Client != client(1) || ex[0].Response == nil || stats.NotHTTP != 1 || stats.TCPStreams != 2 {
		t.Fatalf("%d exchanges (%+v), stats %+v", len(ex), ex, stats)
	}
}

// TestReadUnknownBlocks: pcapng blocks of unknown types are skipped.
func TestReadUnknownBlocks(t *testing.T) {
	c, gets := trafficCapture(1, 3)
	data := c.PcapNG(false)
	// After the section header and the interface description, a custom
	// block (type 0x00000BAD, 16 bytes, little-endian as the file).
	shb := int(data[4]) | int(data[5])<<8
	idb := int(data[shb+4]) | int(data[shb+5])<<8
	at := shb + idb
	block := []byte{0xad, 0x0b, 0, 0, 16, 0, 0, 0, 1, 2, 3, 4, 16, 0, 0, 0}
	data = append(data[:at:at], append(block, data[at:]...)...)
	ex, _ := read(t, data)
	if len(ex) != gets+1 {
		t.Fatalf("%d exchanges, want %d", len(ex), gets+1)
	}
}
