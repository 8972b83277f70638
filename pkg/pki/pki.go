// Package pki makes and loads the certificates of a cluster's mutual TLS:
// one CA per cluster, one certificate per node (for both ends of the
// cluster port and for the agent's TCP API). A node trusts any certificate
// the cluster's CA signed: membership is decided by raft, so hostnames are
// not checked on the cluster port.
package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Validity of the certificates NewCA and Issue make.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 2 * 365 * 24 * time.Hour
)

// Pair is a certificate and its private key, PEM encoded.
type Pair struct{ Cert, Key []byte }

// NewCA makes a self-signed CA.
func NewCA(name string) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"graylane"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return Pair{}, err
	}
	return encode(der, key)
}

// Issue makes a node certificate signed by ca, valid as a TLS server and
// client, for the node's name and hosts (IP addresses or DNS names).
func Issue(ca Pair, node string, hosts []string) (Pair, error) {
	caCert, caKey, err := parse(ca)
	if err != nil {
		return Pair{}, fmt.Errorf("CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: node, Organization: []string{"graylane"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(NodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{node},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return Pair{}, err
	}
	return encode(der, key)
}

// Files names the PEM files of a node's TLS.
type Files struct{ CA, Cert, Key string }

// Load reads the files into server and client configurations for the
// cluster port: both sides present their certificate and require the
// other's, signed by the CA.
func Load(f Files) (server, client *tls.Config, err error) {
	caPEM, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, nil, fmt.Errorf("cluster TLS CA %s: no PEM certificate in it", f.CA)
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster TLS certificate %s / key %s: %w", f.Cert, f.Key, err)
	}
	verify := func(raw [][]byte, usage x509.ExtKeyUsage) error {
		if len(raw) == 0 {
			return errors.New("no certificate presented")
		}
		leaf, err := x509.ParseCertificate(raw[0])
		if err != nil {
			return err
		}
		inter := x509.NewCertPool()
		for _, r := range raw[1:] {
			if c, err := x509.ParseCertificate(r); err == nil {
				inter.AddCert(c)
			}
		}
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{usage}})
		return err
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		// Any node the cluster's CA signed is a peer: check the chain,
		// not the host name (nodes are dialed by address).
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verify(raw, x509.ExtKeyUsageServerAuth)
		},
	}
	return server, client, nil
}

// WriteLab writes a CA and one certificate per node into dir: ca.pem,
// ca-key.pem, NODE.pem, NODE-key.pem. hosts maps a node to its addresses
// (IP addresses or DNS names). A CA already in dir is reused, so nodes can
// be added later; an existing node certificate is never overwritten.
func WriteLab(dir string, hosts map[string][]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for node := range hosts {
		if !validNode(node) {
			return fmt.Errorf("node name %q: use letters, digits, '.', '_' or '-'", node)
		}
		f := LabFiles(dir, node)
		for _, path := range []string{f.Cert, f.Key} {
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("node %s: %s exists; remove it to issue a new certificate", node, path)
			}
		}
	}
	ca, err := labCA(dir)
	if err != nil {
		return err
	}
	for node, h := range hosts {
		p, err := Issue(ca, node, h)
		if err != nil {
			return fmt.Errorf("node %s: %w", node, err)
		}
		if err := writePair(dir, node, p); err != nil {
			return err
		}
	}
	return nil
}

// labCA reads the CA in dir, or makes and writes one if there is none.
func labCA(dir string) (Pair, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	cert, errCert := os.ReadFile(certPath)
	key, errKey := os.ReadFile(keyPath)
	switch {
	case errCert == nil && errKey == nil:
		ca := Pair{Cert: cert, Key: key}
		if _, _, err := parse(ca); err != nil {
			return Pair{}, fmt.Errorf("the CA in %s: %w", dir, err)
		}
		return ca, nil
	case errors.Is(errCert, os.ErrNotExist) && errors.Is(errKey, os.ErrNotExist):
		ca, err := NewCA("graylane cluster CA")
		if err != nil {
			return Pair{}, err
		}
		return ca, writePair(dir, "ca", ca)
	case errCert != nil && !errors.Is(errCert, os.ErrNotExist):
		return Pair{}, errCert
	case errKey != nil && !errors.Is(errKey, os.ErrNotExist):
		return Pair{}, errKey
	}
	return Pair{}, fmt.Errorf("%s has only one of ca.pem and ca-key.pem: restore the other, or remove both to make a new CA", dir)
}

func validNode(name string) bool {
	if name == "" || len(name) > 253 || name == "ca" {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// LabFiles names the files WriteLab wrote for node.
func LabFiles(dir, node string) Files {
	return Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, node+".pem"), Key: filepath.Join(dir, node+"-key.pem")}
}

func writePair(dir, name string, p Pair) error {
	if err := os.WriteFile(filepath.Join(dir, name+".pem"), p.Cert, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name+"-key.pem"), p.Key, 0o600)
}

func encode(der []byte, key *ecdsa.PrivateKey) (Pair, error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{
		Cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
	}, nil
}

func parse(p Pair) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(p.Cert)
	kb, _ := pem.Decode(p.Key)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
