//go:build linux

package stitch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Repair queues (include/uapi/linux/tcp.h, enum { TCP_NO_QUEUE, ... }):
// which queue TCP_QUEUE_SEQ reads while a socket is in repair mode.
// golang.org/x/sys/unix does not define them.
const (
	tcpNoQueue   = 0
	tcpRecvQueue = 1
	tcpSendQueue = 2
)

// Bits of tcpi_options (include/uapi/linux/tcp.h), not in x/sys/unix.
const (
	tcpiOptTimestamps = 1
	tcpiOptSACK       = 2
	tcpiOptWscale     = 4
)

// tcpInfoWscaleOffset is where struct tcp_info keeps
// "__u8 tcpi_snd_wscale : 4, tcpi_rcv_wscale : 4": the byte after
// tcpi_options. unix.TCPInfo has no field for it (the byte falls in the
// alignment padding between Options and Rto), so it is read from the
// padding, which the kernel filled like the rest of the struct.
const tcpInfoWscaleOffset = 6

// SocketState is one TCP socket's state at a quiet moment, as the stitch
// needs it.
type SocketState struct {
	Local, Remote netip.AddrPort
	// SndNxt is the sequence number after the last byte queued for
	// sending (write_seq, TCP_QUEUE_SEQ of the send queue): the next one
	// to send when Unsent is 0. RcvNxt is the next sequence number
	// expected from the peer (TCP_QUEUE_SEQ of the receive queue).
	SndNxt, RcvNxt uint32
	// SndWscale and RcvWscale are tcpi_snd_wscale and tcpi_rcv_wscale:
	// the shift of the peer's advertised windows and of ours (0 if window
	// scaling is off).
	SndWscale, RcvWscale uint8
	// WindowScaling, Timestamps and SACK are the options the handshake
	// agreed on (tcpi_options).
	WindowScaling, Timestamps, SACK bool
	// TSClock is the socket's timestamp clock now (getsockopt
	// TCP_TIMESTAMP): what its next TSval would be.
	TSClock uint32
	// MSS is tcpi_snd_mss: the largest payload this socket sends (the
	// peer's MSS less the options every segment carries). AdvMSS is
	// tcpi_advmss: the MSS it advertised, the largest payload (options
	// included) its peer may send it.
	MSS, AdvMSS uint32
	// Established is tcpi_state == TCP_ESTABLISHED: no FIN received or
	// sent. A socket that received a FIN nobody forwarded cannot be
	// stitched (its rcv_nxt counts the FIN the other peer never got).
	Established bool
	// Unread (SIOCINQ), Unacked (SIOCOUTQ) and Unsent (SIOCOUTQNSD) are
	// bytes in the queues; a stitch needs all three 0.
	Unread, Unacked, Unsent int
}

// Quiet reports whether c has nothing unread, nothing unacknowledged and
// nothing unsent (SIOCINQ, SIOCOUTQ and SIOCOUTQNSD all 0), without
// freezing it: the moment its sequence numbers say everything about the
// bytes in flight, because there are none.
func Quiet(c *net.TCPConn) (bool, error) {
	var unread, unacked, unsent int
	err := control(c, func(fd int) error {
		var err error
		unread, unacked, unsent, err = queues(fd)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("stitch: quiet %s: %w", connName(c), err)
	}
	return unread == 0 && unacked == 0 && unsent == 0, nil
}

// Freeze turns keepalive off on c, flushes an ACK it still owes, puts it in
// repair mode (TCP_REPAIR=1, which needs CAP_NET_ADMIN) and reads its
// state. Freeze does not check that c is quiet: the caller looks at
// Unread, Unacked and Unsent (or called Quiet just before).
//
// What repair mode stops and what it does not (net/ipv4/tcp.c,
// tcp_output.c and tcp_timer.c, checked against torvalds/linux):
//
//   - It stops the socket's own sends from user space: sendmsg fails with
//     EINVAL while no repair queue is selected (tcp_sendmsg_locked), and
//     close sends neither FIN nor RST (__tcp_close calls tcp_disconnect,
//     which in repair mode only sets ECONNABORTED).
//   - It stops no timer: tcp_timer.c has no repair check. On a quiet socket
//     the retransmit, loss-probe and zero-window-probe timers find nothing
//     to send (tcp_retransmit_timer returns when packets_out is 0,
//     tcp_probe_timer when the send queue is empty), but the keepalive
//     timer would send a probe and the delayed-ACK timer (and the
//     compressed-ACK hrtimer) would send an ACK still owed. That is why
//     Freeze turns keepalive off (Go's net package turns it on by default)
//     and sets TCP_QUICKACK first, which sends an owed ACK now, while it is
//     still true, and clears the delayed-ACK timer.
//   - It stops nothing on the receive path: a segment that still reaches
//     the socket is processed as usual, and may be acknowledged and move
//     RcvNxt. Once a socket is frozen its peer's packets must not reach it
//     (the stitch diverts them before the socket sees them).
//
// If reading the state fails, Freeze takes c out of repair mode again
// (keepalive stays off).
func Freeze(c *net.TCPConn) (SocketState, error) {
	st := SocketState{Local: addrPort(c.LocalAddr()), Remote: addrPort(c.RemoteAddr())}
	if err := c.SetKeepAlive(false); err != nil {
		return SocketState{}, fmt.Errorf("stitch: freeze %s: keepalive off: %w", connName(c), err)
	}
	err := control(c, func(fd int) error {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1); err != nil {
			return fmt.Errorf("set TCP_QUICKACK: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, 1); err != nil {
			return fmt.Errorf("set TCP_REPAIR=1 (needs CAP_NET_ADMIN): %w", err)
		}
		if err := readState(fd, &st); err != nil {
			off := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)
			if off != nil {
				off = fmt.Errorf("set TCP_REPAIR off again: %w", off)
			}
			return errors.Join(err, off)
		}
		return nil
	})
	if err != nil {
		return SocketState{}, fmt.Errorf("stitch: freeze %s: %w", connName(c), err)
	}
	return st, nil
}

// Thaw takes c out of repair mode, for a stitch given up: the connection
// goes on as before (keepalive stays off). It uses TCP_REPAIR_OFF_NO_WP,
// not TCP_REPAIR_OFF: the latter also sends a window probe (a segment with
// an old sequence number, to make the peer tell its window), which a
// socket restored on another host needs because it does not know the
// peer's window. A thawed socket never left this kernel and knows its
// peer's window as well as before, so the probe would only be one more
// packet on the wire.
func Thaw(c *net.TCPConn) error {
	err := control(c, func(fd int) error {
		return unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)
	})
	if err != nil {
		return fmt.Errorf("stitch: thaw %s: set TCP_REPAIR off: %w", connName(c), err)
	}
	return nil
}

// CloseSilently closes a frozen c without sending anything, no FIN and no
// RST: in repair mode __tcp_close goes through tcp_disconnect, which moves
// the socket straight to CLOSE (no FIN_WAIT, no TIME_WAIT) and stops its
// timers. It returns an error, and leaves c open, if c is not in repair
// mode: a live socket closed this way would tell its peer nothing while
// forgetting the connection. Once closed, the socket no longer answers for
// its addresses: a segment of the connection that still reached this host
// would be answered with a RST by the kernel.
func CloseSilently(c *net.TCPConn) error {
	name := connName(c)
	err := control(c, func(fd int) error {
		on, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR)
		if err != nil {
			return fmt.Errorf("get TCP_REPAIR: %w", err)
		}
		if on != 1 {
			return errors.New("not frozen (TCP_REPAIR is off): refusing to close a live socket silently")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("stitch: close silently %s: %w", name, err)
	}
	if err := c.Close(); err != nil {
		return fmt.Errorf("stitch: close silently %s: %w", name, err)
	}
	return nil
}

// tcpEstablished is the kernel's TCP_ESTABLISHED, tcpi_state's value.
const tcpEstablished = 1

// readState fills st from a socket in repair mode: the sequence numbers of
// both queues, TCP_INFO, the timestamp clock and the queue sizes.
func readState(fd int, st *SocketState) error {
	var err error
	if st.SndNxt, err = queueSeq(fd, tcpSendQueue); err != nil {
		return fmt.Errorf("send queue: %w", err)
	}
	if st.RcvNxt, err = queueSeq(fd, tcpRecvQueue); err != nil {
		return fmt.Errorf("receive queue: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpNoQueue); err != nil {
		return fmt.Errorf("set TCP_REPAIR_QUEUE=TCP_NO_QUEUE: %w", err)
	}
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return fmt.Errorf("get TCP_INFO: %w", err)
	}
	st.Timestamps = info.Options&tcpiOptTimestamps != 0
	st.SACK = info.Options&tcpiOptSACK != 0
	st.WindowScaling = info.Options&tcpiOptWscale != 0
	// The kernel wrote the wscale byte into the padding after Options;
	// info points at the very struct it filled, so the byte is there.
	wscale := (*[tcpInfoWscaleOffset + 1]byte)(unsafe.Pointer(info))[tcpInfoWscaleOffset]
	st.SndWscale, st.RcvWscale = splitWscale(wscale, littleEndian())
	st.MSS, st.AdvMSS = info.Snd_mss, info.Advmss
	st.Established = info.State == tcpEstablished
	ts, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
	if err != nil {
		return fmt.Errorf("get TCP_TIMESTAMP: %w", err)
	}
	st.TSClock = uint32(ts)
	st.Unread, st.Unacked, st.Unsent, err = queues(fd)
	return err
}

// queueSeq selects repair queue q and reads its TCP_QUEUE_SEQ: write_seq
// for the send queue, rcv_nxt for the receive queue.
func queueSeq(fd, q int) (uint32, error) {
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
		return 0, fmt.Errorf("set TCP_REPAIR_QUEUE=%d: %w", q, err)
	}
	seq, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
	if err != nil {
		return 0, fmt.Errorf("get TCP_QUEUE_SEQ: %w", err)
	}
	return uint32(seq), nil
}

// queues reads the bytes unread (SIOCINQ), unacknowledged (SIOCOUTQ) and
// unsent (SIOCOUTQNSD).
func queues(fd int) (unread, unacked, unsent int, err error) {
	if unread, err = unix.IoctlGetInt(fd, unix.SIOCINQ); err != nil {
		return 0, 0, 0, fmt.Errorf("ioctl SIOCINQ: %w", err)
	}
	if unacked, err = unix.IoctlGetInt(fd, unix.SIOCOUTQ); err != nil {
		return 0, 0, 0, fmt.Errorf("ioctl SIOCOUTQ: %w", err)
	}
	if unsent, err = unix.IoctlGetInt(fd, unix.SIOCOUTQNSD); err != nil {
		return 0, 0, 0, fmt.Errorf("ioctl SIOCOUTQNSD: %w", err)
	}
	return unread, unacked, unsent, nil
}

// splitWscale decodes the tcp_info byte "__u8 tcpi_snd_wscale : 4,
// tcpi_rcv_wscale : 4". C compilers lay bit-fields out from the least
// significant bit on little-endian machines, so snd_wscale is the low
// nibble there, and from the most significant bit on big-endian ones.
func splitWscale(b byte, littleEndian bool) (snd, rcv uint8) {
	if littleEndian {
		return b & 0x0f, b >> 4
	}
	return b >> 4, b & 0x0f
}

func littleEndian() bool {
	return binary.NativeEndian.Uint16([]byte{1, 0}) == 1
}

// control runs f on c's file descriptor, which stays open meanwhile, and
// returns f's error or the one of getting at the descriptor.
func control(c *net.TCPConn, f func(fd int) error) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw conn: %w", err)
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return fmt.Errorf("raw conn: %w", err)
	}
	return ferr
}

// addrPort returns a as the address on the wire: an IPv4 address as such,
// even when Go or a dual-stack socket shows it IPv4-mapped.
func addrPort(a net.Addr) netip.AddrPort {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return netip.AddrPort{}
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// connName names c by its addresses, for errors.
func connName(c *net.TCPConn) string {
	return fmt.Sprintf("%s->%s", addrPort(c.LocalAddr()), addrPort(c.RemoteAddr()))
}
