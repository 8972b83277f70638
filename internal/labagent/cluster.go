package labagent

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/graylane/graylane/internal/netlab"
	"github.com/graylane/graylane/pkg/pki"
)

// Cluster says how a lab agent takes part in a cluster: its cluster port
// is ClusterPort on its backend-LAN address.
type Cluster struct {
	// Join lists the hosts whose agents to join (none: create).
	Join []*netlab.Host
	// Certs is a directory made by pki.WriteLab with a certificate per
	// host name.
	Certs string
	// Raft tuning rendered into the cluster section (zero: defaults), so
	// tests can make a lagging member catch up from a snapshot.
	SnapshotThreshold, TrailingLogs int
	SnapshotInterval                time.Duration
	// Timing is cluster.timing ("": raft's defaults), Voters
	// cluster.voters (0: the default) and Zones each host's cluster.zone
	// by host name (none: no zone).
	Timing string
	Voters int
	Zones  map[string]string
}

// ClusterPort is the cluster port of lab agents.
const ClusterPort = 7071

// ClusterAddr is a lab host's cluster address.
func ClusterAddr(h *netlab.Host) string {
	addr := h.Addr4
	if h.Name == "gw" {
		addr = netlab.GatewayBackend4
	}
	return netip.AddrPortFrom(addr, ClusterPort).String()
}

// clusterConfig renders the cluster section of host's agent.
func clusterConfig(c *Cluster, host *netlab.Host) string {
	var join []string
	for _, j := range c.Join {
		join = append(join, fmt.Sprintf("%q", ClusterAddr(j)))
	}
	f := pki.LabFiles(c.Certs, host.Name)
	cfg := fmt.Sprintf("cluster:\n  raft: %q\n  join: [%s]\n  tls: {ca: %s, cert: %s, key: %s}\n",
		ClusterAddr(host), strings.Join(join, ", "), f.CA, f.Cert, f.Key)
	if c.SnapshotThreshold > 0 {
		cfg += fmt.Sprintf("  snapshotThreshold: %d\n", c.SnapshotThreshold)
	}
	if c.TrailingLogs > 0 {
		cfg += fmt.Sprintf("  trailingLogs: %d\n", c.TrailingLogs)
	}
	if c.SnapshotInterval > 0 {
		cfg += fmt.Sprintf("  snapshotInterval: %s\n", c.SnapshotInterval)
	}
	if c.Timing != "" {
		cfg += fmt.Sprintf("  timing: %s\n", c.Timing)
	}
	if c.Voters > 0 {
		cfg += fmt.Sprintf("  voters: %d\n", c.Voters)
	}
	if z := c.Zones[host.Name]; z != "" {
		cfg += fmt.Sprintf("  zone: %s\n", z)
	}
	return cfg
}
