package apiserver

import (
	"net"
	"sync"
)

// Connection limits of the TCP listeners (HTTPS API, metrics): a peer
// that opens connections and sends nothing (or a byte a minute) holds at
// most PerPeer of them; all peers together at most Total. A connection
// over a limit is closed at once rather than left waiting in the accept
// queue, so it cannot hold up the connections of other peers either.
const (
	DefaultConnTotal   = 4096
	DefaultConnPerPeer = 64
)

// LimitListener wraps ln with the connection limits.
func LimitListener(ln net.Listener, total, perPeer int) net.Listener {
	return &limitListener{Listener: ln, total: total, perPeer: perPeer, peers: map[string]int{}}
}

type limitListener struct {
	net.Listener
	total, perPeer int
	mu             sync.Mutex
	open           int
	peers          map[string]int
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := remoteHost(c)
		if l.take(peer) {
			return &limitedConn{Conn: c, l: l, peer: peer}, nil
		}
		c.Close()
	}
}

func (l *limitListener) take(peer string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open >= l.total || l.peers[peer] >= l.perPeer {
		return false
	}
	l.open++
	l.peers[peer]++
	return true
}

func (l *limitListener) give(peer string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.peers[peer]--; l.peers[peer] <= 0 {
		delete(l.peers, peer)
	}
}

func remoteHost(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	peer string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.give(c.peer) })
	return err
}
