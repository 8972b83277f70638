package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// One port per node carries all traffic between agents, under mutual TLS:
// raft's own RPCs and the cluster's HTTP RPCs (join, forwarded writes,
// applied indexes, status). The first byte a dialer sends says which.
const (
	streamRaft byte = 'R'
	streamRPC  byte = 'H'
)

// handshakeTimeout bounds the TLS handshake and the stream byte.
const handshakeTimeout = 10 * time.Second

// mux accepts connections on the cluster port and hands each to raft or to
// the RPC server by its first byte.
type mux struct {
	ln        net.Listener
	advertise net.Addr
	server    *tls.Config // nil: plaintext (tests only)
	client    *tls.Config
	admit     admitFunc
	log       *slog.Logger
	raft      chan net.Conn
	rpc       chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

// admitFunc checks a TLS peer by its certificate's name and fingerprint,
// for a stream of kind (streamRaft, streamRPC; 0 for one this node
// dials).
type admitFunc func(name, fingerprint string, kind byte) error

func newMux(bind, advertise string, server, client *tls.Config, admit admitFunc, log *slog.Logger) (*mux, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on the cluster address %s: %w", bind, err)
	}
	adv, err := net.ResolveTCPAddr("tcp", advertise)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("cluster address %q: %w", advertise, err)
	}
	if adv.IP == nil || adv.IP.IsUnspecified() {
		ln.Close()
		return nil, fmt.Errorf("cluster address %q: give the address other nodes reach this one at, not a wildcard", advertise)
	}
	m := &mux{ln: ln, advertise: adv, server: server, client: client, admit: admit, log: log,
		raft: make(chan net.Conn), rpc: make(chan net.Conn), done: make(chan struct{})}
	go m.serve()
	return m, nil
}

func (m *mux) serve() {
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			m.log.Warn("cluster port: accept failed", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go m.dispatch(c)
	}
}

func (m *mux) dispatch(c net.Conn) {
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	if m.server != nil {
		tc := tls.Server(c, m.server)
		if err := tc.Handshake(); err != nil {
			m.log.Warn("cluster port: TLS handshake refused", "remote", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
		c = tc
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	if tc, ok := c.(*tls.Conn); ok {
		if err := m.admitPeer(tc, b[0]); err != nil {
			m.log.Warn("cluster port: peer refused", "remote", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
	}
	var to chan net.Conn
	switch b[0] {
	case streamRaft:
		to = m.raft
	case streamRPC:
		to = m.rpc
	default:
		m.log.Warn("cluster port: unknown stream", "remote", c.RemoteAddr(), "byte", b[0])
		c.Close()
		return
	}
	select {
	case to <- c:
	case <-m.done:
		c.Close()
	}
}

// dial opens a stream of the given kind to a node's cluster address.
func (m *mux) dial(ctx context.Context, address string, kind byte) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		return nil, err
	}
	if m.client != nil {
		tc := tls.Client(c, m.client)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS with %s: %w", address, err)
		}
		if err := m.admitPeer(tc, 0); err != nil {
			c.Close()
			return nil, fmt.Errorf("node at %s: %w", address, err)
		}
		c = tc
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// admitPeer runs the node's check of a TLS peer.
func (m *mux) admitPeer(tc *tls.Conn, kind byte) error {
	name, fp, ok := peerOf(tc.ConnectionState())
	if !ok {
		return errors.New("no certificate")
	}
	if m.admit == nil {
		return nil
	}
	return m.admit(name, fp, kind)
}

func (m *mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		close(m.done)
		err = m.ln.Close()
	})
	return err
}

// streams is one kind of stream of a mux as a net.Listener. Closing it
// ends its Accept (raft and the RPC server wait for that when they stop);
// the mux itself closes the port.
type streams struct {
	m      *mux
	ch     chan net.Conn
	closed chan struct{}
	once   *sync.Once
}

func newStreams(m *mux, ch chan net.Conn) streams {
	return streams{m: m, ch: ch, closed: make(chan struct{}), once: new(sync.Once)}
}

func (s streams) Accept() (net.Conn, error) {
	select {
	case c := <-s.ch:
		return c, nil
	case <-s.closed:
		return nil, net.ErrClosed
	case <-s.m.done:
		return nil, net.ErrClosed
	}
}

func (s streams) Close() error {
	s.once.Do(func() { close(s.closed) })
	return nil
}

func (s streams) Addr() net.Addr { return s.m.advertise }

// raftLayer is the raft.StreamLayer of a mux.
type raftLayer struct{ streams }

func (r raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return r.m.dial(ctx, string(address), streamRaft)
}

var _ raft.StreamLayer = raftLayer{}

// errNotMember says this node was removed from the cluster (IsNotMember).
var errNotMember = errors.New("this node is not a member of the cluster (it was removed): send writes to a member, or wipe this node's data directory and join it again")

// errNoLeader says the cluster has no leader to take a write (IsNoLeader).
var errNoLeader = errors.New("the cluster has no leader right now (a majority of the members is not reachable); retry in a few seconds")
