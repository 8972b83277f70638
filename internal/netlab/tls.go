package netlab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/http"
	"net/netip"
	"time"
)

// TLSPort is where StartTLS serves HTTPS.
const TLSPort = 8443

// StartTLS serves HTTPS on TLSPort of h.Addr4 until ctx ends: "/" answers
// the host's name. The certificate is the host's own, self-signed, with
// the host's name as its common name and any name as its DNS names (the
// SNI a client sends is what a test steers by, not what it verifies), so
// a client can tell from the certificate which host ended its TLS session.
func (h *Host) StartTLS(ctx context.Context) error {
	cert, err := selfSigned(h.Name)
	if err != nil {
		return fmt.Errorf("netlab: %s: %w", h.Name, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, h.Name)
	})
	ln, err := h.ListenTCP(netip.AddrPortFrom(h.Addr4, TLSPort).String())
	if err != nil {
		return fmt.Errorf("netlab: %s: %w", h.Name, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go srv.ServeTLS(ln, "", "")
	h.addServers(func() { srv.Close() })
	go func() { <-ctx.Done(); srv.Close() }()
	return nil
}

// selfSigned makes a certificate for name, valid for a day.
func selfSigned(name string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{"*.example.test", "example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
