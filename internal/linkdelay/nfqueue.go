package linkdelay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The nfnetlink_queue protocol (include/uapi/linux/netfilter/
// nfnetlink_queue.h), spoken over a netlink socket: the kernel sends each
// queued packet as a PACKET message and waits for a VERDICT naming its id.
// Attribute payloads are big-endian.
const (
	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1 // struct nfqnl_msg_packet_hdr: be32 id, be16 proto, u8 hook
	nfqaVerdictHdr = 2 // struct nfqnl_msg_verdict_hdr: be32 verdict, be32 id
	nfqaPayload    = 10

	nfqaCfgCmd         = 1 // struct nfqnl_msg_config_cmd: u8 cmd, u8 pad, be16 pf
	nfqaCfgParams      = 2 // struct nfqnl_msg_config_params: be32 range, u8 mode (packed)
	nfqaCfgQueueMaxlen = 3 // be32
	nfqaCfgMask        = 4 // be32
	nfqaCfgFlags       = 5 // be32

	nfqnlCfgCmdBind = 1
	nfqnlCopyPacket = 2
	// nfqaCfgFGSO: hand GSO packets over whole instead of segmenting them
	// first; a verdict then covers the whole burst.
	nfqaCfgFGSO = 1 << 2

	nfDrop   = 0
	nfAccept = 1

	// copyRange is how much of each packet the kernel copies to us: the
	// IPv4 or IPv6 header, enough to read the destination. The kernel keeps
	// the packet; a verdict without a payload releases it unchanged.
	copyRange = 64
)

// queue is a netlink socket bound to one NFQUEUE number. Its namespace is
// the one of the thread that opened it, for its whole life.
type queue struct {
	c   *netlink.Conn
	num uint16
}

// openQueue opens a socket in the calling thread's namespace and binds it
// to queue num, copying packet headers, holding up to maxlen packets in
// the kernel.
func openQueue(num uint16, maxlen uint32) (*queue, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("linkdelay: netlink socket: %w", err)
	}
	q := &queue{c: c, num: num}
	// A full socket buffer loses a packet message (the packet then waits in
	// the kernel until the socket closes); a large buffer makes that rare
	// and no ENOBUFS error interrupts the reader.
	_ = c.SetReadBuffer(4 << 20)
	_ = c.SetOption(netlink.NoENOBUFS, true)
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params, copyRange)
	params[4] = nfqnlCopyPacket
	steps := [][]netlink.Attribute{
		{{Type: nfqaCfgCmd, Data: []byte{nfqnlCfgCmdBind, 0, 0, 0}}},
		{
			{Type: nfqaCfgParams, Data: params},
			{Type: nfqaCfgQueueMaxlen, Data: be32(maxlen)},
			{Type: nfqaCfgFlags, Data: be32(nfqaCfgFGSO)},
			{Type: nfqaCfgMask, Data: be32(nfqaCfgFGSO)},
		},
	}
	for _, attrs := range steps {
		if err := q.config(attrs); err != nil {
			c.Close()
			return nil, err
		}
	}
	return q, nil
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// message is a nfnetlink_queue message of type typ for q's queue.
func (q *queue) message(typ uint16, flags netlink.HeaderFlags, attrs []netlink.Attribute) (netlink.Message, error) {
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, err
	}
	// struct nfgenmsg: family (unspecified), version 0, be16 queue number.
	hdr := []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(q.num >> 8), byte(q.num)}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_QUEUE<<8 | typ), Flags: flags},
		Data:   append(hdr, b...),
	}, nil
}

// config sends a CONFIG message and waits for the kernel's answer.
func (q *queue) config(attrs []netlink.Attribute) error {
	m, err := q.message(nfqnlMsgConfig, netlink.Request|netlink.Acknowledge, attrs)
	if err == nil {
		_, err = q.c.Execute(m)
	}
	if err != nil {
		return fmt.Errorf("linkdelay: configure queue %d: %w", q.num, err)
	}
	return nil
}

// packet is a queued packet: its id and where it goes.
type packet struct {
	id  uint32
	dst netip.Addr // invalid if the header could not be read
}

// receive waits for the next messages and returns the packets among them.
// Errors the kernel reports (for a verdict it did not expect) are skipped;
// a closed socket returns net.ErrClosed (wrapped).
func (q *queue) receive() ([]packet, error) {
	msgs, err := q.c.Receive()
	if err != nil {
		// A kernel's error answer is an Errno as is; a failing socket
		// wraps its error (os.SyscallError, net.ErrClosed).
		var oe *netlink.OpError
		if errors.As(err, &oe) {
			if _, ok := oe.Err.(unix.Errno); ok {
				return nil, nil
			}
		}
		return nil, err
	}
	var out []packet
	for _, m := range msgs {
		if m.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_QUEUE<<8|nfqnlMsgPacket) || len(m.Data) < 4 {
			continue
		}
		if p, ok := parsePacket(m.Data[4:]); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// parsePacket reads a PACKET message's attributes.
func parsePacket(b []byte) (packet, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return packet{}, false
	}
	var p packet
	var haveID bool
	for ad.Next() {
		switch ad.Type() {
		case nfqaPacketHdr:
			if d := ad.Bytes(); len(d) >= 4 {
				p.id, haveID = binary.BigEndian.Uint32(d), true
			}
		case nfqaPayload:
			p.dst = destination(ad.Bytes())
		}
	}
	return p, haveID && ad.Err() == nil
}

// destination reads an IPv4 or IPv6 header's destination address.
func destination(ip []byte) netip.Addr {
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4:
		return netip.AddrFrom4([4]byte(ip[16:20]))
	case len(ip) >= 40 && ip[0]>>4 == 6:
		return netip.AddrFrom16([16]byte(ip[24:40]))
	}
	return netip.Addr{}
}

// verdict is the fate of one packet.
type verdict struct {
	id     uint32
	accept bool
}

// send sends verdicts, in order, up to 1 000 (32 kB) per write: a write
// must fit the socket's send buffer.
func (q *queue) send(vs []verdict) error {
	for len(vs) > 0 {
		n := min(len(vs), 1000)
		if err := q.sendBatch(vs[:n]); err != nil {
			return err
		}
		vs = vs[n:]
	}
	return nil
}

func (q *queue) sendBatch(vs []verdict) error {
	msgs := make([]netlink.Message, 0, len(vs))
	for _, v := range vs {
		hdr := make([]byte, 8)
		if v.accept {
			binary.BigEndian.PutUint32(hdr, nfAccept)
		} else {
			binary.BigEndian.PutUint32(hdr, nfDrop)
		}
		binary.BigEndian.PutUint32(hdr[4:], v.id)
		m, err := q.message(nfqnlMsgVerdict, netlink.Request, []netlink.Attribute{{Type: nfqaVerdictHdr, Data: hdr}})
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	_, err := q.c.SendMessages(msgs)
	return err
}

func (q *queue) close() error { return q.c.Close() }

// kernelDrops reads the kernel's drop counts for queue num in the calling
// thread's namespace (zeros if unreadable). A line of
// /proc/thread-self/net/netfilter/nfnetlink_queue is: queue number, port
// id, packets queued, copy mode, copy range, queue_dropped, user_dropped,
// last id, 1.
func kernelDrops(num uint16) (queueDropped, userDropped uint64) {
	b, err := os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 || f[0] != strconv.Itoa(int(num)) {
			continue
		}
		queueDropped, _ = strconv.ParseUint(f[5], 10, 64)
		userDropped, _ = strconv.ParseUint(f[6], 10, 64)
	}
	return queueDropped, userDropped
}
