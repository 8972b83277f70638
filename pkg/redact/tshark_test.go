package redact

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/graylane/graylane/internal/testenv"
)

// writePcap writes frames as a classic pcap file (Ethernet link type):
// a 24-byte file header, then per record 16 bytes (seconds, microseconds,
// captured length, original length) and the bytes. orig[i] is the length
// on the wire, larger than the frame when a snaplen cut it.
func writePcap(t *testing.T, path string, frames [][]byte, orig []int) {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, 0xa1b2c3d4))
	b.Write(le.AppendUint16(le.AppendUint16(nil, 2), 4))
	b.Write(make([]byte, 8)) // time zone, sigfigs
	b.Write(le.AppendUint32(le.AppendUint32(nil, 65535), 1))
	ts := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC).Unix()
	for i, f := range frames {
		rec := le.AppendUint32(nil, uint32(ts)+uint32(i))
		rec = le.AppendUint32(rec, 0)
		rec = le.AppendUint32(rec, uint32(len(f)))
		rec = le.AppendUint32(rec, uint32(orig[i]))
		b.Write(rec)
		b.Write(f)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

var tsharkFields = []string{
	"ip.src", "ip.dst", "ipv6.src", "ipv6.dst",
	"ip.checksum.status", "tcp.checksum.status", "udp.checksum.status",
	"icmp.checksum.status", "icmpv6.checksum.status",
}

// tsharkRead returns, per frame, each field's values (tshark separates
// repeated fields, e.g. outer and inner headers, with commas).
func tsharkRead(t *testing.T, tshark, path string) [][]string {
	t.Helper()
	args := []string{"-r", path, "-n",
		"-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-d", "udp.port==2152,gtp", "-T", "fields", "-E", "separator=/t", "-E", "occurrence=a"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	out, err := exec.Command(tshark, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var rows [][]string
	for line := range strings.Lines(string(out)) {
		if line = strings.TrimRight(line, "\n"); line != "" && !strings.HasPrefix(line, "Running as user") {
			rows = append(rows, strings.Split(line, "\t"))
		}
	}
	return rows
}

// TestTsharkReadsRedactedFrames writes every redacted case, and the
// GTP-U one cut by a snaplen inside the inner TCP payload, to a pcap and
// has tshark validate every checksum it finds (IPv4 header, TCP, UDP,
// ICMP, ICMPv6, outer and inner). A frame with a checksum broken on
// purpose proves that validation is on.
func TestTsharkReadsRedactedFrames(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark", "tshark")
	r := mustNew(t, referenceKey)
	var frames [][]byte
	var lens []int
	var originals []map[netip.Addr]bool
	var names []string
	for _, c := range frameCases() {
		names = append(names, c.name)
		seen := map[netip.Addr]bool{}
		f := c.build(func(a netip.Addr) netip.Addr { seen[a] = true; return a })
		if err := r.Frame(f, keep); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		frames, lens, originals = append(frames, f), append(lens, len(f)), append(originals, seen)
	}
	gtp := frames[4]
	cut := bytes.Clone(gtp[:len(gtp)-len(payloadBytes)+10])
	frames, lens, originals = append(frames, cut), append(lens, len(gtp)), append(originals, originals[4])
	bad := bytes.Clone(frames[0])
	bad[len(bad)-1] ^= 0xff // the TCP payload: the TCP checksum must now fail
	frames, lens, originals = append(frames, bad), append(lens, len(bad)), append(originals, originals[0])

	path := filepath.Join(t.TempDir(), "redacted.pcap")
	writePcap(t, path, frames, lens)
	rows := tsharkRead(t, tshark, path)
	if len(rows) != len(frames) {
		t.Fatalf("tshark printed %d rows for %d frames: %q", len(rows), len(frames), rows)
	}
	cutRow, badRow := len(frames)-2, len(frames)-1
	for i, row := range rows {
		t.Logf("frame %d: %q", i+1, row)
		checkTsharkAddrs(t, r, i, row, originals[i])
		for j, field := range tsharkFields[4:] {
			for _, st := range splitValues(row, 4+j) {
				switch {
				case i == badRow && field == "tcp.checksum.status":
					if st != "0" {
						t.Errorf("frame %d: tshark gives %s=%s for a broken checksum: is validation on?", i+1, field, st)
					}
				case i < len(names) && st == "3" && field == "udp.checksum.status" && strings.Contains(names[i], "checksum 0"):
					// not present: built with UDP checksum 0, which stays 0
				case i == cutRow && st == "2" && (field == "tcp.checksum.status" || field == "udp.checksum.status"):
					// unverified: the snaplen cut the payload these sums cover
				case st != "1":
					t.Errorf("frame %d: %s = %s, want 1 (Good); row %q", i+1, field, st, row)
				}
			}
		}
	}
}

func splitValues(row []string, i int) []string {
	if i >= len(row) || row[i] == "" {
		return nil
	}
	return strings.Split(row[i], ",")
}

// checkTsharkAddrs: every address tshark shows is either kept or the
// pseudonym of an address the frame was built with, never one to hide.
func checkTsharkAddrs(t *testing.T, r *Redactor, i int, row []string, originals map[netip.Addr]bool) {
	t.Helper()
	allowed := map[netip.Addr]bool{}
	for a := range originals {
		allowed[redactAddr(r, a)] = true
	}
	shown := 0
	for col := range 4 {
		for _, s := range splitValues(row, col) {
			a, err := netip.ParseAddr(s)
			if err != nil || !allowed[a] || (originals[a] && !keep(a)) {
				t.Errorf("frame %d: tshark shows address %q, not a kept address or a pseudonym (%v)", i+1, s, err)
			}
			shown++
		}
	}
	if shown < 2 {
		t.Errorf("frame %d: tshark shows %d addresses: %q", i+1, shown, row)
	}
}
