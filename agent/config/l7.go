package config

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/graylane/graylane/pkg/h2head"
)

// L7 tunes the agent's listener for L7 services (services with
// spec.match): the connections it holds until their first request's head
// arrives, and how it moves their bytes once decided. Left out: the
// defaults of package l7proxy.
type L7 struct {
	// Splice is how bytes move after the decision: "stitch" joins the two
	// TCP connections into one in the data path after the first response
	// (pkg/stitch: later packets are rewritten by a tc program, the
	// gateway's sockets closed; at routing's throughput, 0.87-0.92 of it
	// measured, with the agent's CPU near zero); "copy" copies both ways
	// in the agent (splice(2) through a pipe; 0.57-0.66); "kernel" splices
	// the two sockets in the kernel (sockmap; 0.40). Left out: stitch
	// where the kernel can run it (TCX, Linux 6.6), else copy, logged.
	Splice string `yaml:"splice"`
	// StitchIdleTimeout, a Go duration, is how long a stitched connection
	// nothing passed on stays stitched ("": 2h15m, longer than the 2 h
	// after which peers with TCP keepalive on probe an idle connection);
	// then its pair is removed and its next packet meets the gateway's
	// stack, which resets it. A peer that vanished without a FIN or a
	// reset holds a pair slot (65 536) this long.
	StitchIdleTimeout string `yaml:"stitchIdleTimeout"`
	// HeadTimeout, a Go duration, is the time from accept to a complete
	// first request head ("": 5s). One deadline, not an idle timeout: a
	// client that trickles bytes does not earn more time.
	HeadTimeout string `yaml:"headTimeout"`
	// MaxHeadBytes bounds the bytes read before a decision (0: 16384, at
	// most 32768).
	MaxHeadBytes int `yaml:"maxHeadBytes"`
	// MaxPending bounds the connections accepted and not yet decided and
	// connected (0: 1024); past it the oldest still reading is evicted.
	MaxPending int `yaml:"maxPending"`
	// ConnectTimeout, a Go duration, bounds connecting to the backend and
	// writing the first request to it ("": 3s).
	ConnectTimeout string `yaml:"connectTimeout"`
	// Accept is who answers a new connection: "proxy" (the default: the
	// agent accepts it, reads the first request's head and connects to
	// the backend) or "kernel" (the stitch program answers it with a SYN
	// cookie, decides on the head of its first segment, connects to the
	// backend and joins the two, with no socket of the gateway: pkg/stitch
	// accept.go; for the services it can decide — app http, header
	// rules, at most 8 backends a pool of equal weights —, the
	// others stay with the agent). Needs the stitch (l7.splice stitch or
	// left out, where the kernel runs it).
	Accept string `yaml:"accept"`
	// AcceptPorts is the range of the gateway's ports the kernel accept
	// connects to backends from, one connection at once each ("": the
	// default, 61000-65095, above Linux's ephemeral range). The agent
	// adds it to net.ipv4.ip_local_reserved_ports. At most 4096; a port
	// is used again after every other free one, so keep it well above
	// the connections open at once.
	AcceptPorts string `yaml:"acceptPorts"`
	// Source is the address the agent connects to backends from:
	// "gateway" (default; the route's source, so backends see the
	// gateway) or "client" (the client's own address, so backends see
	// the real client; needs the backends' route to the clients through
	// this gateway, and adds a policy rule, fwmark 0x6c37 lookup 167).
	Source string `yaml:"source"`
}

// The values of l7.splice and l7.source.
const (
	L7SpliceCopy   = "copy"
	L7SpliceKernel = "kernel"
	L7SpliceStitch = "stitch"

	L7SourceGateway = "gateway"
	L7SourceClient  = "client"

	L7AcceptProxy  = "proxy"
	L7AcceptKernel = "kernel"
)

// MaxAcceptPorts bounds AcceptPorts (the kernel accept's connections at
// once: pkg/stitch's grants).
const MaxAcceptPorts = 4096

// DefaultAcceptPorts is AcceptPorts' default.
const DefaultAcceptPorts = "61000-65095"

// AcceptPortRange returns AcceptPorts (or its default) as its first and
// last port. Validate has checked it.
func (l *L7) AcceptPortRange() (first, last uint16) {
	first, last, _ = parsePortRange(cmp.Or(l.AcceptPorts, DefaultAcceptPorts))
	return first, last
}

// parsePortRange reads "A-B" with 1024 <= A <= B <= 65535 and at most
// 65536 ports.
func parsePortRange(s string) (first, last uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	x, errA := strconv.ParseUint(a, 10, 16)
	y, errB := strconv.ParseUint(b, 10, 16)
	if !ok || errA != nil || errB != nil || x < 1024 || y < x {
		return 0, 0, fmt.Errorf("%q is not a port range such as %q", s, DefaultAcceptPorts)
	}
	return uint16(x), uint16(y), nil
}

// DefaultStitchIdle is StitchIdleTimeout's default.
const DefaultStitchIdle = 2*time.Hour + 15*time.Minute

// StitchIdle returns StitchIdleTimeout, or its default. Validate has
// checked it.
func (l *L7) StitchIdle() time.Duration {
	if d, err := time.ParseDuration(l.StitchIdleTimeout); err == nil {
		return d
	}
	return DefaultStitchIdle
}

// Durations returns HeadTimeout and ConnectTimeout (0 where left out).
// Validate has checked them.
func (l *L7) Durations() (head, connect time.Duration) {
	head, _ = time.ParseDuration(l.HeadTimeout)
	connect, _ = time.ParseDuration(l.ConnectTimeout)
	return head, connect
}

// validateL7 checks the l7 section.
func (c *Config) validateL7(bad reportFunc) {
	l := &c.L7
	switch l.Splice {
	case "", L7SpliceCopy, L7SpliceKernel, L7SpliceStitch:
	default:
		bad("l7.splice", "%q is not a splice: use stitch (later packets rewritten in the data path, the gateway's sockets closed; the default where the kernel can), copy (the agent copies the bytes) or kernel (the sockmap splice: later bytes stay in the gateway's sockets)", l.Splice)
	}
	if s := l.StitchIdleTimeout; s != "" {
		if d, err := time.ParseDuration(s); err != nil || d < time.Minute || d > 30*24*time.Hour {
			bad("l7.stitchIdleTimeout", "%q is not a duration between 1m and 720h, such as \"2h15m\"", s)
		}
	}
	switch l.Accept {
	case "", L7AcceptProxy:
	case L7AcceptKernel:
		if l.Splice != "" && l.Splice != L7SpliceStitch {
			bad("l7.accept", "kernel needs the stitch: l7.splice is %q; leave it out or give stitch", l.Splice)
		}
		if l.Source == L7SourceClient {
			bad("l7.accept", "kernel connects from the gateway's ports: l7.source client is not served by it")
		}
	default:
		bad("l7.accept", "%q is not an accept: use proxy (the default: the agent accepts) or kernel (the stitch program answers, decides and joins)", l.Accept)
	}
	if s := l.AcceptPorts; s != "" {
		if first, last, err := parsePortRange(s); err != nil {
			bad("l7.acceptPorts", "%v, from 1024 up", err)
		} else if int(last)-int(first)+1 > MaxAcceptPorts {
			bad("l7.acceptPorts", "%q holds %d ports: at most %d", s, int(last)-int(first)+1, MaxAcceptPorts)
		}
	}
	switch l.Source {
	case "", L7SourceGateway, L7SourceClient:
	default:
		bad("l7.source", "%q is not a source: use gateway (the default: backends see the gateway) or client (backends see the client; their route to clients must go through this gateway)", l.Source)
	}
	for path, s := range map[string]string{"l7.headTimeout": l.HeadTimeout, "l7.connectTimeout": l.ConnectTimeout} {
		if s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > time.Minute {
			bad(path, "%q is not a duration between 1ms and 1m, such as \"5s\"", s)
		}
	}
	if l.MaxHeadBytes < 0 || l.MaxHeadBytes > h2head.MaxBytes {
		bad("l7.maxHeadBytes", "is %d: give 0 (the default, 16384) up to %d", l.MaxHeadBytes, h2head.MaxBytes)
	}
	if l.MaxPending < 0 || l.MaxPending > 1<<20 {
		bad("l7.maxPending", "is %d: give 0 (the default, 1024) up to %d", l.MaxPending, 1<<20)
	}
}
