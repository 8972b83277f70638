package l7proxy

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/graylane/graylane/pkg/service"
)

// testCert is a self-signed certificate for *.example.test, and a pool
// that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "example.test"},
		DNSNames:     []string{"*.example.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// startTLS starts a TLS server that, for each line it reads, answers its
// name and the server name its client sent.
func startTLS(t *testing.T, name string, cert tls.Certificate) netip.AddrPort {
	t.Helper()
	ln := listenTCP(t)
	tln := tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		tln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for range 1000 {
			c, err := tln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveTLSLines(c.(*tls.Conn), name) })
		}
	})
	return addrPort(ln.Addr())
}

func serveTLSLines(c *tls.Conn, name string) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for range 100 {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		if _, err := c.Write([]byte(name + " " + c.ConnectionState().ServerName + "\n")); err != nil {
			return
		}
	}
}

// TestTLSSNI: a TLS connection is decided by its ClientHello's server
// name, and the handshake is the backend's: the client verifies the
// backend's certificate, which the proxy has no key for.
func TestTLSSNI(t *testing.T) {
	checkLeaks(t)
	cert, roots := testCert(t)
	rule := service.MatchRule{SNI: &service.SNIMatch{Name: "beta.example.test"}, Pool: service.Canary}
	e := newEnv(t, envConfig{rules: []service.MatchRule{rule},
		stable: startTLS(t, "stable", cert), canary: startTLS(t, "canary", cert)})
	for _, tc := range []struct{ sni, want string }{
		{"beta.example.test", "canary"},
		{"alpha.example.test", "stable"},
		{"BETA.example.test", "canary"},
	} {
		raw, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c := tls.Client(raw, &tls.Config{ServerName: tc.sni, RootCAs: roots})
		c.SetDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for i := range 3 {
			if _, err := c.Write([]byte("hello\n")); err != nil {
				t.Fatalf("%s: write: %v", tc.sni, err)
			}
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: read: %v", tc.sni, err)
			}
			if want := tc.want + " " + strings.ToLower(tc.sni) + "\n"; strings.ToLower(line) != strings.ToLower(want) {
				t.Errorf("%s, line %d: %q, want %q", tc.sni, i, line, want)
			}
		}
		c.Close()
	}
	if c := e.obs.Pool(service.Canary); c.Decided != 2 || c.Rules[0] != 2 {
		t.Errorf("canary counts %+v, want 2 decided by rule 0", c)
	}
}
