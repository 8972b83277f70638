package capture

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/graylane/graylane/internal/testenv"
)

// tsharkFields are the fields TestTsharkReadsCapture asks of every frame.
var tsharkFields = []string{
	"frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id", "frame.interface_name",
	"frame.packet_flags_direction", "frame.drop_count", "frame.protocols",
}

// TestTsharkReadsCapture writes the scenario's capture and checks what
// tshark reads of every packet: nanosecond time, original and captured
// length, interface, direction (epb_flags), drop count (epb_dropcount) and
// that the frames decode down to TCP or UDP.
func TestTsharkReadsCapture(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark", "tshark")
	file := writeScenarioFile(t)
	args := []string{"-n", "-r", file, "-T", "fields", "-E", "separator=|"}
	for _, f := range tsharkFields {
		args = append(args, "-e", f)
	}
	out := run(t, exec.Command(tshark, args...))
	rows := strings.Split(strings.TrimSpace(out), "\n")
	packets, _ := scenario(t)
	if len(rows) != len(packets) {
		t.Fatalf("tshark read %d packets, want %d:\n%s", len(rows), len(packets), out)
	}
	for n, p := range packets {
		got := strings.Split(rows[n], "|")
		want := tsharkRow(p)
		if len(got) != len(tsharkFields) {
			t.Fatalf("packet %d: tshark row %q has %d fields, want %d", n, rows[n], len(got), len(tsharkFields))
		}
		for f, name := range tsharkFields {
			ok := got[f] == want[f]
			switch name {
			case "frame.packet_flags_direction": // printed in hex, e.g. 0x00000001
				v, err := strconv.ParseUint(got[f], 0, 32)
				ok = err == nil && fmt.Sprint(v) == want[f]
			case "frame.protocols": // tshark may decode further (2152 is GTP-U's port)
				ok = strings.HasPrefix(got[f], want[f])
			}
			if !ok {
				t.Errorf("packet %d: %s = %q, want %q", n, name, got[f], want[f])
			}
		}
	}
}

// tsharkRow is what tshark should print of p, field by field.
func tsharkRow(p Packet) []string {
	drops := ""
	if p.DroppedBefore > 0 {
		drops = fmt.Sprint(p.DroppedBefore)
	}
	protocols := "eth:ethertype:ip:tcp"
	if p.Iface == 1 {
		protocols = "eth:ethertype:ipv6:udp"
	}
	return []string{
		fmt.Sprintf("%d.%09d", p.Time.Unix(), p.Time.Nanosecond()),
		fmt.Sprint(p.OrigLen), fmt.Sprint(len(p.Data)), fmt.Sprint(p.Iface),
		scenarioIfaces[p.Iface].pcapngName(), fmt.Sprint(uint8(p.Direction)), drops, protocols,
	}
}

// TestCapinfosReadsInterfaces checks what capinfos reads of each interface:
// its name, resolution, snaplen, the packets captured on it and the number
// of statistics blocks. (Neither capinfos nor tshark 4.0 print the values
// of isb_ifrecv / isb_ifdrop; TestReadBackWithPcapgo checks those.)
func TestCapinfosReadsInterfaces(t *testing.T) {
	capinfos := testenv.RequireTool(t, "capinfos", "wireshark-common")
	out := run(t, exec.Command(capinfos, writeScenarioFile(t)))
	if !strings.Contains(out, "Number of interfaces in file: 2\n") {
		t.Fatalf("capinfos does not count 2 interfaces:\n%s", out)
	}
	for n, want := range []struct{ packets, stats int }{{3, 2}, {2, 1}} {
		_, section, ok := strings.Cut(out, fmt.Sprintf("Interface #%d info:\n", n))
		if !ok {
			t.Fatalf("capinfos has no section for interface %d:\n%s", n, out)
		}
		section, _, _ = strings.Cut(section, "Interface #")
		for _, line := range []string{
			"Name = " + scenarioIfaces[n].pcapngName(),
			"Encapsulation = Ethernet",
			"Time precision = nanoseconds (9)",
			fmt.Sprintf("Capture length = %d", scenarioSnapLen),
			fmt.Sprintf("Number of packets = %d", want.packets),
			fmt.Sprintf("Number of stat entries = %d", want.stats),
		} {
			if !strings.Contains(section, line) {
				t.Errorf("capinfos, interface %d: no line %q in\n%s", n, line, section)
			}
		}
	}
}

// writeScenarioFile writes the scenario's capture to a temporary file.
func writeScenarioFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "scenario.pcapng")
	if err := os.WriteFile(path, writeScenario(t), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// run runs cmd and returns its standard output; tshark's warning about
// running as root goes to standard error, which is shown only on failure.
func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, stderr.String())
	}
	return stdout.String()
}
