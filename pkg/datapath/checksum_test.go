package datapath

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/service"
)

// TestTCChecksumStates sends real TCP and UDP traffic, IPv4 and IPv6,
// through the tc programs with the senders' checksum offload on (their
// skbs are CHECKSUM_PARTIAL: the L4 field holds only the pseudo header's
// sum) and off (complete checksums), and captures every rewritten frame
// where it arrives: at the backend for the client's packets, at the
// client for the replies. A partial checksum must be the pseudo header's
// sum of the rewritten addresses, so that offload completes it right (a
// receiver on the same machine never checks it: only a capture can); a
// complete one must verify. A wrong seed would go unnoticed on veth and
// corrupt every segment a real NIC sends.
func TestTCChecksumStates(t *testing.T) {
	_, canRead, why := findIPSummed(mustKernelBTF(t))
	for _, c := range []struct {
		name    string
		offload bool
		helpers bool
	}{
		{"partial", true, false},
		{"complete", false, false},
		{"partial-helpers", true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			testChecksumState(t, c.offload, c.helpers || !canRead)
		})
	}
	if !canRead {
		t.Logf("the tc programs cannot read the checksum state here (%s): every variant used the helpers", why)
	}
}

func testChecksumState(t *testing.T, offload, helpers bool) {
	lab := netlab.NewT(t, netlab.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := lab.SetTxChecksum(ctx, offload); err != nil {
		t.Fatal(err)
	}
	backend := lab.Stable[0]
	if _, err := backend.StartServers(ctx); err != nil {
		t.Fatal(err)
	}
	dp, err := New(Options{FlowTable: 4096, MaxServices: 8, ChecksumHelpers: helpers})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	attachGateway(t, lab, dp, ModeTC)
	if err := dp.Apply(checksumServices(backend)); err != nil {
		t.Fatal(err)
	}
	before, err := dp.Stats()
	if err != nil {
		t.Fatal(err)
	}

	atBackend, err := openCapture(backend)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(atBackend)
	atClient, err := openCapture(lab.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(atClient)

	sendChecksumTraffic(t, ctx, lab, backend)
	partial, complete := checkCaptures(t, backend, atBackend, atClient)
	t.Logf("checked %d frames with partial checksums, %d with complete ones", partial, complete)
	if offload && partial == 0 {
		t.Error("offload on, yet no frame arrived with a partial checksum: the case is not covered")
	}
	if !offload && partial != 0 {
		t.Errorf("offload off, yet %d frames arrived with partial checksums", partial)
	}
	after, err := dp.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if n := after["csum_helper"] - before["csum_helper"]; helpers != (n > 0) {
		t.Errorf("csum_helper grew by %d with helpers %v", n, helpers)
	}
}

// checksumServices are TestTCChecksumStates' services: web (TCP 80, to
// the hello server) and dns (UDP 53, to the UDP one) on each VIP, IPv4
// and IPv6, with backend as their one backend.
func checksumServices(backend *netlab.Host) []service.Service {
	var services []service.Service
	for _, fam := range []struct {
		name    string
		vip, to netip.Addr
	}{{"4", netlab.VIP4, backend.Addr4}, {"6", netlab.VIP6, backend.Addr6}} {
		services = append(services,
			service.Service{Name: "web" + fam.name, VIP: fam.vip, Port: 80, Protocol: service.TCP,
				Stable: []service.Backend{{Addr: netip.AddrPortFrom(fam.to, netlab.HelloPort)}}},
			service.Service{Name: "dns" + fam.name, VIP: fam.vip, Port: 53, Protocol: service.UDP,
				Stable: []service.Backend{{Addr: netip.AddrPortFrom(fam.to, netlab.UDPPort)}}})
	}
	return services
}

// sendChecksumTraffic makes a few connections and datagrams each way;
// the hello server answers a connection with its name, the UDP one
// echoes the payload.
func sendChecksumTraffic(t *testing.T, ctx context.Context, lab *netlab.Lab, backend *netlab.Host) {
	payload := make([]byte, 1000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	for _, vip := range []netip.Addr{netlab.VIP4, netlab.VIP6} {
		for range 3 {
			if name, err := lab.Client.Hello(ctx, netip.AddrPortFrom(vip, 80), netip.Addr{}); err != nil || name != backend.Name {
				t.Fatalf("hello through %s: %q, %v", vip, name, err)
			}
			if name, _, err := lab.Client.HelloUDP(ctx, netip.AddrPortFrom(vip, 53), netip.Addr{}, payload); err != nil || name != backend.Name {
				t.Fatalf("UDP hello through %s: %q, %v", vip, name, err)
			}
		}
	}
}

// checkCaptures checks the steered frames captured at the backend
// (atBackend) and at the client (atClient), and counts those that came
// with partial and with complete checksums.
func checkCaptures(t *testing.T, backend *netlab.Host, atBackend, atClient int) (partial, complete int) {
	// What the client sent arrives at the backend's own address and
	// port; what the backend answered arrives from the VIP.
	toBackend := func(d decoded) bool {
		return (d.dst.Addr() == backend.Addr4 || d.dst.Addr() == backend.Addr6) &&
			(d.dst.Port() == netlab.HelloPort || d.dst.Port() == netlab.UDPPort)
	}
	fromVIP := func(d decoded) bool {
		return (d.src.Addr() == netlab.VIP4 || d.src.Addr() == netlab.VIP6) && (d.src.Port() == 80 || d.src.Port() == 53)
	}
	for _, cp := range []struct {
		name string
		fd   int
		ours func(decoded) bool
	}{{"backend", atBackend, toBackend}, {"client", atClient, fromVIP}} {
		p, c := checkCapture(t, cp.name, cp.fd, cp.ours)
		partial, complete = partial+p, complete+c
	}
	return partial, complete
}

// checkCapture reads the frames captured on fd (at the place name) and
// checks each that ours picks (a steered flow's): its checksums must
// verify, a partial one as the pseudo header's sum. Every family and
// protocol must have a frame. It counts the frames with partial and with
// complete checksums.
func checkCapture(t *testing.T, name string, fd int, ours func(decoded) bool) (partial, complete int) {
	frames, err := drainCapture(fd)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, fr := range frames {
		// decodeAs fills in the addresses before it checks sums:
		// only the steered flows' frames are judged (not neighbour
		// discovery and the like).
		d, err := decodeAs(fr.data, fr.partial)
		if !ours(d) {
			continue
		}
		if err != nil {
			t.Errorf("at the %s, %s -> %s (partial %v): %v", name, d.src, d.dst, fr.partial, err)
			continue
		}
		if fr.partial {
			partial++
		} else {
			complete++
		}
		fam := "4"
		if d.src.Addr().Is6() {
			fam = "6"
		}
		seen[fmt.Sprintf("%s/%d", fam, d.proto)]++
	}
	for _, k := range []string{"4/6", "4/17", "6/6", "6/17"} {
		if seen[k] == 0 {
			t.Errorf("at the %s: no steered frame of IPv%s protocol %s captured", name, k[:1], k[2:])
		}
	}
	return partial, complete
}

// capturedFrame is a frame a packet socket received, and whether the
// kernel marked its L4 checksum as not yet complete (CHECKSUM_PARTIAL).
type capturedFrame struct {
	data    []byte
	partial bool
}

// openCapture opens a packet socket on h's lab interface, in h's network
// namespace, that reports each frame's checksum state.
func openCapture(h *netlab.Host) (int, error) {
	fd := -1
	err := h.Do(func() error {
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		link, err := netlink.LinkByName(netlab.HostIf)
		if err != nil {
			unix.Close(s)
			return fmt.Errorf("%s: %w", netlab.HostIf, err)
		}
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: link.Attrs().Index}); err != nil {
			unix.Close(s)
			return fmt.Errorf("bind the packet socket: %w", err)
		}
		if err := unix.SetsockoptInt(s, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			unix.Close(s)
			return fmt.Errorf("PACKET_AUXDATA: %w", err)
		}
		fd = s
		return nil
	})
	return fd, err
}

// captureLimit bounds what drainCapture reads.
const captureLimit = 10000

// drainCapture reads the frames queued on a packet socket, until none
// arrives for a moment (or captureLimit of them).
func drainCapture(fd int) ([]capturedFrame, error) {
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	var frames []capturedFrame
	buf := make([]byte, 1<<16)
	oob := make([]byte, unix.CmsgSpace(sizeofAuxdata))
	for len(frames) < captureLimit {
		n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			return frames, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read the capture: %w", err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // the host's own sends: not what the gateway forwarded
		}
		fr := capturedFrame{data: append([]byte(nil), buf[:n]...)}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("capture's control message: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= sizeofAuxdata {
				fr.partial = binary.NativeEndian.Uint32(m.Data)&unix.TP_STATUS_CSUMNOTREADY != 0
			}
		}
		frames = append(frames, fr)
	}
	return frames, nil
}

// sizeofAuxdata is the size of struct tpacket_auxdata.
var sizeofAuxdata = int(unsafe.Sizeof(unix.TpacketAuxdata{}))
