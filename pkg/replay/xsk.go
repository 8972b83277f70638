package replay

import (
	"errors"
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The UMEM: numFrames frames of frameSize bytes, one packet each. The TX
// and completion rings hold every frame, so the sender never waits for a
// ring slot while it has a free frame.
const (
	frameSize  = 4096
	numFrames  = 4096
	ringSize   = numFrames
	fillSize   = 64 // the kernel wants a fill ring even for a socket that only sends
	sizeofDesc = int(unsafe.Sizeof(unix.XDPDesc{}))
)

// ring is a single-producer/single-consumer ring shared with the kernel
// through mmap: the producer and consumer indexes run freely and are
// masked on use.
type ring struct {
	mem                []byte
	producer, consumer *uint32
	flags              *uint32
	descs              unsafe.Pointer
	mask               uint32
}

func mapRing(fd int, off unix.XDPRingOffset, pgoff int64, n, elem int) (ring, error) {
	mem, err := unix.Mmap(fd, pgoff, int(off.Desc)+n*elem, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return ring{}, err
	}
	at := func(o uint64) *uint32 { return (*uint32)(unsafe.Pointer(&mem[o])) }
	return ring{mem: mem, producer: at(off.Producer), consumer: at(off.Consumer), flags: at(off.Flags),
		descs: unsafe.Pointer(&mem[off.Desc]), mask: uint32(n - 1)}, nil
}

// xsk is an AF_XDP socket bound to one queue of an interface, used only to
// send.
type xsk struct {
	fd       int
	umem     []byte
	tx, cq   ring
	free     []uint64 // UMEM frame addresses not in flight
	inFlight int
	ZeroCopy bool
}

// openXSK binds an AF_XDP socket to queue of ifindex, zero-copy if the
// driver takes it, else in copy mode (veth, and most virtual devices).
func openXSK(ifindex, queue int) (*xsk, error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("AF_XDP socket: %w (needs Linux 4.18+ and CAP_NET_RAW)", err)
	}
	s := &xsk{fd: fd}
	if err := s.setup(); err != nil {
		s.Close()
		return nil, err
	}
	// Flags 0: the kernel binds zero-copy where the driver supports it and
	// falls back to copy mode where it does not (veth); XDP_OPTIONS says
	// which it chose.
	if err := unix.Bind(fd, &unix.SockaddrXDP{Ifindex: uint32(ifindex), QueueID: uint32(queue)}); err != nil {
		s.Close()
		return nil, fmt.Errorf("bind AF_XDP socket to queue %d of interface %d: %w", queue, ifindex, err)
	}
	var opts uint32
	size := uint32(4)
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_OPTIONS,
		uintptr(unsafe.Pointer(&opts)), uintptr(unsafe.Pointer(&size)), 0); e == 0 {
		s.ZeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	}
	return s, nil
}

// setup registers the UMEM and maps the TX and completion rings.
func (s *xsk) setup() error {
	var err error
	s.umem, err = unix.Mmap(-1, 0, numFrames*frameSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		return fmt.Errorf("UMEM: %w", err)
	}
	reg := unix.XDPUmemReg{Addr: uint64(uintptr(unsafe.Pointer(&s.umem[0]))), Len: uint64(len(s.umem)), Size: frameSize}
	if _, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0); e != 0 {
		return fmt.Errorf("register UMEM: %w", e)
	}
	for _, o := range [][2]int{{unix.XDP_UMEM_FILL_RING, fillSize}, {unix.XDP_UMEM_COMPLETION_RING, ringSize}, {unix.XDP_TX_RING, ringSize}} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, o[0], o[1]); err != nil {
			return fmt.Errorf("AF_XDP ring option %d: %w", o[0], err)
		}
	}
	var off unix.XDPMmapOffsets
	size := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return fmt.Errorf("AF_XDP ring offsets: %w", e)
	}
	if s.tx, err = mapRing(s.fd, off.Tx, unix.XDP_PGOFF_TX_RING, ringSize, sizeofDesc); err != nil {
		return fmt.Errorf("map TX ring: %w", err)
	}
	if s.cq, err = mapRing(s.fd, off.Cr, unix.XDP_UMEM_PGOFF_COMPLETION_RING, ringSize, 8); err != nil {
		return fmt.Errorf("map completion ring: %w", err)
	}
	s.free = make([]uint64, numFrames)
	for i := range s.free {
		s.free[i] = uint64(i * frameSize)
	}
	return nil
}

// reclaim takes the frames the kernel has sent back from the completion
// ring.
func (s *xsk) reclaim() {
	cons := atomic.LoadUint32(s.cq.consumer)
	prod := atomic.LoadUint32(s.cq.producer)
	for ; cons != prod; cons++ {
		addr := *(*uint64)(unsafe.Add(s.cq.descs, uintptr(cons&s.cq.mask)*8))
		s.free = append(s.free, addr)
		s.inFlight--
	}
	atomic.StoreUint32(s.cq.consumer, cons)
}

// frame returns a free UMEM frame, kicking the kernel and reclaiming
// until one is free, and ok=false only if the kernel keeps them all.
func (s *xsk) frame() (addr uint64, buf []byte, err error) {
	for try := 0; len(s.free) == 0; try++ {
		s.reclaim()
		if len(s.free) > 0 {
			break
		}
		if try > 1_000_000 {
			return 0, nil, errors.New("AF_XDP: the kernel sends no frame back (is the interface up?)")
		}
		if err := s.kick(); err != nil {
			return 0, nil, err
		}
	}
	addr = s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return addr, s.umem[addr : addr+frameSize], nil
}

// queue puts the frame at addr, n bytes long, on the TX ring. The ring
// holds every frame, so it is never full while frames are free.
func (s *xsk) queue(addr uint64, n int) {
	prod := *s.tx.producer
	d := (*unix.XDPDesc)(unsafe.Add(s.tx.descs, uintptr(prod&s.tx.mask)*uintptr(sizeofDesc)))
	*d = unix.XDPDesc{Addr: addr, Len: uint32(n)}
	atomic.StoreUint32(s.tx.producer, prod+1)
	s.inFlight++
}

// kick tells the kernel to send what is queued. In copy mode it sends in
// the call; EAGAIN and EBUSY mean it sent some and will take the rest on
// the next kick.
func (s *xsk) kick() error {
	_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.EINTR:
		return nil
	case unix.ENETDOWN, unix.ENXIO:
		return fmt.Errorf("AF_XDP send: %w: is the interface up?", e)
	}
	return fmt.Errorf("AF_XDP send: %w", e)
}

// pending reports whether the kernel has not yet taken every queued frame.
func (s *xsk) pending() bool {
	return atomic.LoadUint32(s.tx.consumer) != *s.tx.producer
}

// drain kicks until every queued frame has been sent back.
func (s *xsk) drain() error {
	for try := 0; s.inFlight > 0; try++ {
		if try > 1_000_000 {
			return fmt.Errorf("AF_XDP: %d frames never came back from the kernel", s.inFlight)
		}
		if s.pending() {
			if err := s.kick(); err != nil {
				return err
			}
		}
		s.reclaim()
	}
	return nil
}

// invalid returns how many descriptors the kernel refused.
func (s *xsk) invalid() uint64 {
	var st unix.XDPStatistics
	size := uint32(unsafe.Sizeof(st))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
		return 0
	}
	return st.Tx_invalid_descs
}

// Close releases the socket and its memory.
func (s *xsk) Close() {
	for _, m := range [][]byte{s.tx.mem, s.cq.mem, s.umem} {
		if m != nil {
			_ = unix.Munmap(m)
		}
	}
	if s.fd >= 0 {
		_ = unix.Close(s.fd)
	}
}
