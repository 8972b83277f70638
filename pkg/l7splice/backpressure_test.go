package l7splice

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// TestBackpressure: a backend that stops reading stops the client, as it
// would without the gateway: the bytes the client gets to write are
// bounded by the sockets' buffers, not queued without limit in the kernel
// between the spliced sockets.
func TestBackpressure(t *testing.T) {
	g := newGWLab(t, labOpts{stable: 1})
	b := g.lab.Stable[0]
	startTestServer(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dst := netip.AddrPortFrom(b.Addr4, testPort)

	routed, err := g.lab.Client.DialTCP(ctx, netip.Addr{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	defer routed.Close()
	routed.Write([]byte("stall\n"))
	direct := writeUntilBlocked(routed)

	cc, a := g.dialVIP(ctx, t, "stall\n")
	p, err := g.agent(ctx, a, dst, "")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	spliced := writeUntilBlocked(cc)
	toBackend, _, _ := p.Bytes()
	t.Logf("written before blocking: routed %d KiB, spliced %d KiB (%d KiB of it spliced)", direct>>10, spliced>>10, toBackend>>10)
	if spliced > 64<<20 {
		t.Errorf("the client wrote %d MiB to a backend that reads nothing", spliced>>20)
	}
}

// writeUntilBlocked writes until a write makes no progress for a second,
// and returns how much was written.
func writeUntilBlocked(c interface {
	Write([]byte) (int, error)
	SetWriteDeadline(time.Time) error
}) int {
	buf := make([]byte, 64<<10)
	total := 0
	for total < 1<<30 {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := c.Write(buf)
		total += n
		if err != nil {
			break
		}
	}
	return total
}
