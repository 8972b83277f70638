package datapath

import (
	"encoding/binary"
	"net/netip"

	"github.com/graylane/graylane/bpf"
	"github.com/graylane/graylane/pkg/histogram"
	"github.com/graylane/graylane/pkg/maglev"
	"github.com/graylane/graylane/pkg/service"
)

// Compile-time checks that Go's constants and the C layout agree: these
// assignments only compile while the array sizes are equal.
var (
	_ [maglev.Size]uint8                     = bpf.SteerTable{}.Lut
	_ [maglev.MaxBackends]bpf.SteerBackend   = bpf.SteerTable{}.Backends
	_ [service.MaxBackendsPerPool]struct{}   = [int(bpf.SteerLimitsMAX_BACKENDS)]struct{}{}
	_ [service.MaxWeight]struct{}            = [int(bpf.SteerLimitsWEIGHT_SCALE)]struct{}{}
	_ [service.MaxLatencyThresholds]struct{} = [int(bpf.SteerLimitsMAX_THRESHOLDS)]struct{}{}
	// bucket 0 of the kernel's histograms is the zero bucket
	_ [histogram.Buckets + 1]uint64 = bpf.SteerHist{}.Buckets
)

// htons converts a port to the network byte order the programs compare.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// ntohs is the inverse of htons.
func ntohs(v uint16) uint16 { return htons(v) }

// addr16 is the programs' address form: 16 bytes, IPv4 mapped.
func addr16(a netip.Addr) [16]uint8 { return a.Unmap().As16() }

// addrFrom16 turns the programs' address form back into an address.
func addrFrom16(b [16]uint8) netip.Addr { return netip.AddrFrom16(b).Unmap() }

func svcKey(fe service.Frontend) bpf.SteerEndpoint {
	return endpoint(netip.AddrPortFrom(fe.VIP, fe.Port), fe.Protocol)
}

func endpoint(ap netip.AddrPort, proto service.Protocol) bpf.SteerEndpoint {
	return bpf.SteerEndpoint{Addr: addr16(ap.Addr()), Port: htons(ap.Port()), Proto: uint8(proto)}
}

func pinKey(id uint32, p netip.Prefix) bpf.SteerPinKey {
	p = p.Masked()
	bits := uint32(p.Bits())
	if p.Addr().Is4() {
		bits += 96
	}
	return bpf.SteerPinKey{Prefixlen: 32 + bits, SvcId: id, Addr: addr16(p.Addr())}
}

func poolCounterKey(id uint32, p service.Pool) uint32 { return id*2 + uint32(p) }

// buildTable builds a pool's lookup table.
func buildTable(backends []service.Backend) (*bpf.SteerTable, error) {
	mb := make([]maglev.Backend, len(backends))
	for i, b := range backends {
		mb[i] = maglev.Backend{Name: b.Addr.String(), Weight: b.Weight}
	}
	lut, err := maglev.Build(mb)
	if err != nil {
		return nil, err
	}
	t := &bpf.SteerTable{BackendsLen: uint32(len(backends)), Lut: lut}
	for i, b := range backends {
		t.Backends[i] = bpf.SteerBackend{Addr: addr16(b.Addr.Addr()), Port: htons(b.Addr.Port())}
	}
	return t, nil
}

func netipAddrPort(b bpf.SteerBackend) netip.AddrPort {
	return netip.AddrPortFrom(addrFrom16(b.Addr), ntohs(b.Port))
}
