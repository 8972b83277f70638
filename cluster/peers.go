package cluster

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"

	"github.com/hashicorp/raft"
)

// Peers' certificates. Every node remembers the certificates it met on the
// cluster port under each name (in both directions: a node's one
// certificate is its client and its server certificate). When a member is
// removed, the leader revokes the certificates it met under its name (a
// Revoke command): from then on every node refuses them at the TLS
// handshake, so a removed node — or whoever holds its key — can neither
// rejoin nor speak for a member. A host re-installed with a new
// certificate may join again.

// Bounds of what a node remembers: a few certificates per name (renewals),
// and names enough for a large fleet.
const (
	maxCertsPerPeer = 4
	maxPeers        = 4096
)

// Fingerprint is the SHA-256 of a certificate's DER, in hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// peerCerts remembers the certificates met under each name.
type peerCerts struct {
	mu   sync.Mutex
	seen map[string][]string // name -> fingerprints, newest last
}

func newPeerCerts() *peerCerts { return &peerCerts{seen: map[string][]string{}} }

// met records a peer's certificate; ok is false when it was not recorded
// (the table is full of other names).
func (p *peerCerts) met(name, fingerprint string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fps, known := p.seen[name]
	if !known && len(p.seen) >= maxPeers {
		return
	}
	if slices.Contains(fps, fingerprint) {
		return
	}
	fps = append(fps, fingerprint)
	if len(fps) > maxCertsPerPeer {
		fps = fps[len(fps)-maxCertsPerPeer:]
	}
	p.seen[name] = fps
}

// of returns the certificates met under name.
func (p *peerCerts) of(name string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen[name])
}

// peerOf is the name and fingerprint of a TLS connection's peer.
func peerOf(cs tls.ConnectionState) (name, fingerprint string, ok bool) {
	if len(cs.PeerCertificates) == 0 {
		return "", "", false
	}
	leaf := cs.PeerCertificates[0]
	return leaf.Subject.CommonName, Fingerprint(leaf.Raw), true
}

// Revoke revokes certificates of a node removed from the cluster. An
// older node skips it (IgnoreIfUnknown): it keeps accepting the revoked
// certificates until upgraded, and steers as the others do meanwhile.
type Revoke struct {
	Node         string   `json:"node"`
	Fingerprints []string `json:"fingerprints"`
}

func (Revoke) Type() CommandType { return CmdRevoke | IgnoreIfUnknown }

func (c *Revoke) apply(st *State) error {
	if c.Node == "" || len(c.Fingerprints) == 0 {
		return &InvalidError{Err: fmt.Errorf("revoke: want a node and its certificates' fingerprints")}
	}
	for _, fp := range c.Fingerprints {
		if b, err := hex.DecodeString(fp); err != nil || len(b) != sha256.Size {
			return &InvalidError{Err: fmt.Errorf("revoke %s: %q is not a SHA-256 fingerprint in hex", c.Node, fp)}
		}
	}
	if st.Revoked == nil {
		st.Revoked = map[string]string{}
	}
	for _, fp := range c.Fingerprints {
		st.Revoked[fp] = c.Node
	}
	return nil
}

// Revoked says whether a certificate (by fingerprint) was revoked, and
// whose it was.
func (f *FSM) Revoked(fingerprint string) (node string, revoked bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	node, revoked = f.state.Revoked[fingerprint]
	return node, revoked
}

// admitPeer is the mux's check of a peer at the TLS handshake: revoked
// certificates are refused, and raft streams only come from members (a
// node that has no configuration yet, a joining one, takes them from
// anyone its CA signed: the leader adding it).
func (n *Node) admitPeer(name, fingerprint string, kind byte) error {
	n.peers.met(name, fingerprint)
	if node, revoked := n.fsm.Revoked(fingerprint); revoked {
		return fmt.Errorf("the certificate of %q (%s…) was revoked when node %q was removed", name, fingerprint[:16], node)
	}
	r := n.started.Load() // the mux serves before raft is up
	if kind != streamRaft || r == nil {
		return nil
	}
	f := r.GetConfiguration()
	if f.Error() != nil || len(f.Configuration().Servers) == 0 {
		return nil
	}
	if !slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return string(s.ID) == name }) {
		return fmt.Errorf("node %q is not a member of the cluster: no raft stream", name)
	}
	return nil
}

// revokeRemoved revokes the certificates this node (the leader) met under
// a removed member's name.
func (n *Node) revokeRemoved(node string) error {
	fps := n.peers.of(node)
	if len(fps) == 0 {
		n.log.Warn("removed a member whose certificate this leader never met: it is not revoked; if its key may be in the wrong hands, reissue the cluster's certificates", "node", node)
		return nil
	}
	data, err := Encode(&Revoke{Node: node, Fingerprints: fps})
	if err != nil {
		return err
	}
	if _, err := n.applyLocal(data); err != nil {
		return fmt.Errorf("revoke the certificate of removed node %q: %w", node, err)
	}
	n.log.Info("revoked the certificates of a removed member", "node", node, "certificates", len(fps))
	return nil
}
