package l7splice

import (
	"errors"
	"io"
	"os"
	"time"
)

// Flow control. A skb the verdict program redirects to a peer's egress
// waits in the peer's psock queue, charged to no socket's receive buffer,
// until a kworker sends it, and the kernel does not bound that queue:
// without a limit a backend that stops reading lets a client fill the
// gateway's memory (measured: the client wrote 1 GiB to a backend that
// read nothing). A direction cannot be paused by taking its socket out of
// l7_socks: the skbs TCP is handing to the verdict at that moment find no
// program and are dropped, their bytes already acknowledged (measured:
// 82 760 bytes of 1 GiB lost).
//
// So when a socket's peer holds more than MaxInflight bytes unacknowledged,
// l7_splice marks the socket held, for good, and passes its later skbs to
// the socket's own queue (SK_PASS), where they are charged to its receive
// buffer and TCP's window stops the sender. watch wakes on that data, and
// forward waits until the peer has sent what was redirected, then copies
// the rest of the direction in user space (copyHeld), in order: a
// congested direction becomes a plain proxied one, bounded by the socket
// buffers.

// copyHeld copies what side from receives to the other side, until from's
// EOF, if from is held; it returns at once if not. Reads go through the
// sockmap's recvmsg, which serves the socket's psock queue.
func (p *Pair) copyHeld(from int) error {
	v, err := p.peer(from)
	if err != nil || v.Held == 0 {
		return err
	}
	src, dst := p.socks[from].conn, p.socks[1-from].conn
	src.SetReadDeadline(time.Time{}) // watch may have been woken by one
	buf := make([]byte, 64<<10)
	var copied uint64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return p.closedOr(werr)
			}
			copied += uint64(n)
			p.user[1-from].Add(int64(n))
		}
		switch {
		case errors.Is(err, io.EOF):
			// EOF while held skbs still wait behind the socket's own
			// egress queue (they reach the reader in order, later)?
			v, err := p.peer(from)
			if err != nil {
				return err
			}
			if copied >= v.HeldBytes {
				return nil
			}
			if err := p.sleep(time.Millisecond); err != nil {
				return err
			}
		case err != nil:
			return p.closedOr(err)
		}
	}
}

// closedOr returns errPairClosed if the pair is being closed (which
// interrupts reads and writes with a deadline), else err.
func (p *Pair) closedOr(err error) error {
	select {
	case <-p.stop:
		return errPairClosed
	default:
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errPairClosed
	}
	return err
}
