package l7splice

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// sock is one TCP socket of a pair, as the kernel sees it.
type sock struct {
	conn   *net.TCPConn
	raw    syscall.RawConn
	cookie uint64
}

func newSock(c *net.TCPConn) (sock, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return sock{}, err
	}
	s := sock{conn: c, raw: raw}
	err = s.control(func(fd int) error {
		var err error
		s.cookie, err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE)
		return err
	})
	return s, err
}

// control runs fn with the socket's descriptor.
func (s sock) control(fn func(fd int) error) error {
	var ferr error
	if err := s.raw.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func (s sock) info() (*unix.TCPInfo, error) {
	var info *unix.TCPInfo
	err := s.control(func(fd int) error {
		var err error
		info, err = unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		return err
	})
	return info, err
}

// written returns how many bytes have entered the socket's send queue since
// it was created (up to a constant: the acknowledged SYN), exactly: the
// bytes acknowledged plus those still queued (SIOCOUTQ is write_seq -
// snd_una). The two are read apart, so the read is repeated until no
// acknowledgement arrived in between.
func (s sock) written() (uint64, error) {
	for range 1000 {
		a, err := s.info()
		if err != nil {
			return 0, err
		}
		var outq int
		if err := s.control(func(fd int) error {
			var err error
			outq, err = unix.IoctlGetInt(fd, unix.SIOCOUTQ)
			return err
		}); err != nil {
			return 0, err
		}
		b, err := s.info()
		if err != nil {
			return 0, err
		}
		if a.Bytes_acked == b.Bytes_acked {
			return a.Bytes_acked + uint64(outq), nil
		}
	}
	return 0, errors.New("send queue never still")
}

// drain reads, without blocking, whatever the socket has received and not
// yet been read.
func (s sock) drain() ([]byte, bool, error) {
	var out []byte
	buf := make([]byte, 64<<10)
	eof := false
	err := s.control(func(fd int) error {
		for {
			n, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
			switch {
			case errors.Is(err, unix.EAGAIN):
				return nil
			case errors.Is(err, unix.EINTR):
				continue
			case err != nil:
				return err
			case n == 0:
				eof = true
				return nil
			}
			out = append(out, buf[:n]...)
		}
	})
	return out, eof, err
}

// kick makes TCP hand the socket's queued data to its data_ready callback
// now, which after the socket joined l7_socks is the verdict program:
// setting SO_RCVLOWAT calls tcp_data_ready. Without it, bytes that arrived
// between the last read and the splice would wait for the next segment.
func (s sock) kick() error {
	return s.control(func(fd int) error {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	})
}

func (s sock) shutdownWrite() error {
	return s.control(func(fd int) error { return unix.Shutdown(fd, unix.SHUT_WR) })
}

// abort makes the coming close send a RST (SO_LINGER 0) and closes.
func (s sock) abort() error {
	err := s.control(func(fd int) error {
		return unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	})
	return errors.Join(err, s.conn.Close())
}

// TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpTimeWait    = 6
	tcpClose       = 7
	tcpCloseWait   = 8
	tcpLastAck     = 9
	tcpClosing     = 11
)

// recvEnd tells whether the peer has finished sending: fin when its FIN
// came, or an error when the connection was reset or failed. Both false:
// still open. shut says whether this socket's write side was shut down: a
// socket that sent its FIN and then received one goes to TIME_WAIT, and
// its descriptor's socket then reads as CLOSE without an error.
func (s sock) recvEnd(shut bool) (fin bool, _ error) {
	var state uint8
	var soerr int
	err := s.control(func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		state = info.State
		soerr, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		return err
	})
	switch {
	case err != nil:
		return false, err
	case soerr != 0:
		return false, syscall.Errno(soerr)
	}
	switch state {
	case tcpCloseWait, tcpLastAck, tcpClosing, tcpTimeWait:
		return true, nil
	case tcpClose:
		if shut {
			return true, nil
		}
		return false, fmt.Errorf("connection closed (%w)", unix.ECONNRESET)
	}
	return false, nil
}
