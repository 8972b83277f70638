package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"

	"github.com/graylane/graylane/pkg/pki"
)

// DefaultCertsDir is where `graylane-agent certs` writes by default.
const DefaultCertsDir = "/etc/graylane/pki"

// certs makes a cluster CA (or reuses the one in -dir) and a certificate
// per node, and prints the cluster.tls section each node's config needs.
// It is meant for labs and small clusters; a fleet with its own PKI gives
// the agents certificates from it instead.
func certs(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("graylane-agent certs", flag.ContinueOnError)
	fs.SetOutput(out)
	dir := fs.String("dir", DefaultCertsDir, "directory for ca.pem, ca-key.pem, NODE.pem and NODE-key.pem (a CA already there is reused)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: graylane-agent certs [-dir DIR] NODE=HOST[,HOST...]...

Makes a CA for the cluster's mutual TLS (or reuses the one in DIR) and one
certificate per node, valid for the node's addresses and names (the ones
the other nodes and graylanectl use to reach it). Example:

  graylane-agent certs -dir /etc/graylane/pki gw1=10.0.0.1 gw2=10.0.0.2 gw3=10.0.0.3,gw3.example.net

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err}
	}
	if fs.NArg() == 0 {
		return usageError{errors.New("certs: name at least one node, as in gw1=10.0.0.1")}
	}
	hosts := map[string][]string{}
	for _, arg := range fs.Args() {
		node, list, ok := strings.Cut(arg, "=")
		if !ok || node == "" || list == "" {
			return usageError{fmt.Errorf("certs: %q: write NODE=HOST[,HOST...], as in gw1=10.0.0.1", arg)}
		}
		if _, dup := hosts[node]; dup {
			return usageError{fmt.Errorf("certs: node %q is named twice", node)}
		}
		for _, h := range strings.Split(list, ",") {
			if net.ParseIP(h) == nil && !validDNSName(h) {
				return usageError{fmt.Errorf("certs: %s: %q is neither an IP address nor a DNS name", node, h)}
			}
			hosts[node] = append(hosts[node], h)
		}
	}
	if err := pki.WriteLab(*dir, hosts); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	nodes := make([]string, 0, len(hosts))
	for n := range hosts {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	fmt.Fprintf(out, "wrote the CA and %d node certificates to %s; keep ca-key.pem off the nodes.\n", len(nodes), *dir)
	for _, n := range nodes {
		f := pki.LabFiles(*dir, n)
		fmt.Fprintf(out, "\n# %s: in its agent config (copy ca.pem, %s.pem and %s-key.pem to it)\ncluster:\n  tls: {ca: %s, cert: %s, key: %s}\n", n, n, n, f.CA, f.Cert, f.Key)
	}
	return nil
}

// validDNSName accepts host names such as gw3.example.net.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
