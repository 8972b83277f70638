package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// XDP is what an interface's driver says it can do with XDP in the driver
// (native mode). Asking changes nothing: nothing is attached.
type XDP struct {
	// Known is false when the kernel cannot tell (before Linux 6.3).
	Known bool
	// Native: the driver runs XDP programs and redirects from them, which
	// is what steering needs.
	Native bool
	// Target: the driver accepts frames redirected to it by XDP.
	Target bool
	// ZeroCopy: AF_XDP sockets can bind to it in zero-copy mode.
	ZeroCopy bool
}

// Constants of the kernel's "netdev" generic netlink family (Linux 6.3+,
// include/uapi/linux/netdev.h).
const (
	netdevCmdDevGet       = 1
	netdevAttrIfindex     = 1
	netdevAttrXDPFeatures = 3
	netdevXDPActBasic     = 1 << 0 // XDP_PASS, XDP_DROP, XDP_TX, XDP_ABORTED
	netdevXDPActRedirect  = 1 << 1 // XDP_REDIRECT from this device
	netdevXDPActNdoXmit   = 1 << 2 // receives frames redirected to it
	netdevXDPActZeroCopy  = 1 << 3 // AF_XDP zero copy
)

// InterfaceXDP asks the kernel what the driver of the interface (in the
// caller's network namespace) supports of native XDP. One generic netlink
// socket serves the family lookup and the question.
func InterfaceXDP(ifindex int) (XDP, error) {
	s, err := openGenl()
	if err != nil {
		return XDP{}, err
	}
	defer s.close()
	family, err := s.familyID("netdev")
	if errors.Is(err, unix.ENOENT) {
		return XDP{}, nil // no netdev family: a kernel before 6.3 does not say
	}
	if err != nil {
		return XDP{}, err
	}
	attrs, err := s.request(family, netdevCmdDevGet, 1, nlAttr(netdevAttrIfindex, binary.NativeEndian.AppendUint32(nil, uint32(ifindex))))
	if err != nil {
		return XDP{}, fmt.Errorf("ask the kernel for the XDP features of interface %d: %w", ifindex, err)
	}
	v, ok := attrs[netdevAttrXDPFeatures]
	if !ok || len(v) < 8 {
		return XDP{}, fmt.Errorf("the kernel's answer for interface %d has no XDP features", ifindex)
	}
	f := binary.NativeEndian.Uint64(v)
	return XDP{
		Known:    true,
		Native:   f&(netdevXDPActBasic|netdevXDPActRedirect) == netdevXDPActBasic|netdevXDPActRedirect,
		Target:   f&netdevXDPActNdoXmit != 0,
		ZeroCopy: f&netdevXDPActZeroCopy != 0,
	}, nil
}

// genl is one generic netlink socket, for request/answer exchanges.
type genl struct {
	fd  int
	seq uint32
}

func openGenl() (*genl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("open a generic netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind a generic netlink socket: %w", err)
	}
	// Bounded: a kernel that never answers cannot hang `check`.
	tv := unix.Timeval{Sec: 2}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &genl{fd: fd}, nil
}

func (g *genl) close() { unix.Close(g.fd) }

// familyID resolves a generic netlink family's name (ENOENT: no such family).
func (g *genl) familyID(name string) (uint16, error) {
	attrs, err := g.request(unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, 2, nlAttr(unix.CTRL_ATTR_FAMILY_NAME, append([]byte(name), 0)))
	if err != nil {
		return 0, fmt.Errorf("look up the generic netlink family %q: %w", name, err)
	}
	v, ok := attrs[unix.CTRL_ATTR_FAMILY_ID]
	if !ok || len(v) < 2 {
		return 0, fmt.Errorf("look up the generic netlink family %q: no id in the answer", name)
	}
	return binary.NativeEndian.Uint16(v), nil
}

// request sends one command and returns the attributes of its answer.
func (g *genl) request(family uint16, cmd, version uint8, attrs []byte) (map[uint16][]byte, error) {
	g.seq++
	body := append([]byte{cmd, version, 0, 0}, attrs...)
	msg := make([]byte, unix.NLMSG_HDRLEN, unix.NLMSG_HDRLEN+len(body))
	binary.NativeEndian.PutUint32(msg[0:4], uint32(unix.NLMSG_HDRLEN+len(body)))
	binary.NativeEndian.PutUint16(msg[4:6], family)
	binary.NativeEndian.PutUint16(msg[6:8], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(msg[8:12], g.seq)
	msg = append(msg, body...)
	if err := unix.Sendto(g.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, err
	}
	buf := make([]byte, 1<<16)
	for range 16 { // skip at most a few stray messages
		n, _, err := unix.Recvfrom(g.fd, buf, 0)
		if err != nil {
			return nil, err
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if m.Header.Seq != g.seq {
				continue
			}
			if m.Header.Type == unix.NLMSG_ERROR {
				if len(m.Data) >= 4 {
					if code := int32(binary.NativeEndian.Uint32(m.Data[:4])); code != 0 {
						return nil, unix.Errno(-code)
					}
				}
				return nil, errors.New("an empty answer")
			}
			if len(m.Data) < 4 {
				return nil, errors.New("a short answer")
			}
			return parseAttrs(m.Data[4:]), nil
		}
	}
	return nil, errors.New("no answer")
}

// nlAttr encodes one netlink attribute.
func nlAttr(typ uint16, value []byte) []byte {
	b := make([]byte, 4, 4+len(value)+3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(value)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, value...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// parseAttrs decodes a run of netlink attributes (the last of a type wins).
func parseAttrs(b []byte) map[uint16][]byte {
	out := make(map[uint16][]byte)
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		typ := binary.NativeEndian.Uint16(b[2:4]) & 0x3fff // without the nested/byte-order flags
		if l < 4 || l > len(b) {
			break
		}
		out[typ] = b[4:l]
		next := (l + 3) &^ 3
		if next > len(b) {
			break
		}
		b = b[next:]
	}
	return out
}
