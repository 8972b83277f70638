package shadow

import (
	"net/netip"
	"time"
)

// udpPairs pairs UDP datagrams: on each 4-tuple, the first datagram's
// sender is the client; each datagram of the server answers the oldest
// unanswered datagram of the client.
type udpPairs struct {
	flows map[flowKey]*udpFlow
	order []*udpFlow
}

type udpFlow struct {
	client, server netip.AddrPort
	exchanges      []Exchange
	answered       int // exchanges[:answered] have their response
}

func newUDPPairs() *udpPairs { return &udpPairs{flows: map[flowKey]*udpFlow{}} }

func (u *udpPairs) add(pk decoded, at time.Time) {
	k := keyOf(pk.src, pk.dst)
	f := u.flows[k]
	if f == nil {
		f = &udpFlow{client: pk.src, server: pk.dst}
		u.flows[k] = f
		u.order = append(u.order, f)
	}
	if pk.src == f.client {
		f.exchanges = append(f.exchanges, Exchange{Protocol: UDP, Client: f.client, Server: f.server, At: at,
			Request: Request{Body: pk.payload, Raw: pk.payload}})
		return
	}
	if f.answered == len(f.exchanges) {
		return // an answer to nothing seen
	}
	ex := &f.exchanges[f.answered]
	ex.Response, ex.Latency = &Response{Body: pk.payload}, at.Sub(ex.At)
	f.answered++
}

func (u *udpPairs) exchanges(stats *ReadStats) []Exchange {
	var out []Exchange
	for _, f := range u.order {
		stats.UDP += len(f.exchanges)
		stats.Unanswered += len(f.exchanges) - f.answered
		out = append(out, f.exchanges...)
	}
	return out
}
