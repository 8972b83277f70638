package stitch

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/cilium/ebpf"
)

// The kernel accept's hand-off (bpf/stitch/handoff.h): a new connection
// whose first segment the program cannot decide on (the request's head
// not whole in it, not HTTP/1.x, over one MSS, no backend) is handed to
// the agent's listener, which accepts it as if the stack had answered the
// SYN: its local address is the front the client dialled, the segment's
// bytes are the first it reads. With no listener such a connection is
// reset.

// ErrNoSyncookies says the namespace's net.ipv4.tcp_syncookies is 0: the
// stack would refuse every connection handed to the listener (the hand-off
// rides on its SYN cookie path).
var ErrNoSyncookies = errors.New("stitch: net.ipv4.tcp_syncookies is 0: the kernel accept cannot hand connections to the listener")

// SetListener makes ln the listener the kernel accept hands the
// connections it cannot decide on to (nil: none, they are reset). ln is an
// IPv4 TCP listener, not MPTCP (the sockmap refuses it), of the namespace
// of the interfaces AttachAccept was given, which must route the fronts'
// addresses locally; it should have IP_TRANSPARENT (pkg/l7splice's
// ListenTransparent makes such a listener, and the same one may serve
// both). Closing ln takes it out (the kernel does). SetListener reads
// net.ipv4.tcp_syncookies in the calling thread's namespace, which must be
// ln's, and fails with ErrNoSyncookies if it is 0.
func (k *Kernel) SetListener(ln *net.TCPListener) error {
	return k.SetListenerOf(false, ln)
}

// SetListenerOf is SetListener for the listener of the given family
// (v6: the IPv6 fronts').
func (k *Kernel) SetListenerOf(v6 bool, ln *net.TCPListener) error {
	key := uint32(0)
	if v6 {
		key = 1
	}
	if ln == nil {
		if err := k.objs.StitchListener.Delete(&key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("stitch: remove the accept's listener: %w", err)
		}
		return nil
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_syncookies"); err == nil && strings.TrimSpace(string(b)) == "0" {
		return ErrNoSyncookies
	}
	raw, err := ln.SyscallConn()
	if err != nil {
		return fmt.Errorf("stitch: the accept's listener: %w", err)
	}
	var uerr error
	if err := raw.Control(func(fd uintptr) {
		uerr = k.objs.StitchListener.Update(&key, uint64(fd), ebpf.UpdateAny)
	}); err != nil {
		return fmt.Errorf("stitch: the accept's listener: %w", err)
	}
	if uerr != nil {
		return fmt.Errorf("stitch: the accept's listener into stitch_listener: %w", uerr)
	}
	return nil
}
