// Package stitch holds the kernel side of the stitch (issue 22): the tc
// program and maps that join a client's TCP connection to the gateway and
// the gateway's connection to a backend into one connection in the data
// path, once the agent has read the first request and connected to the
// backend it chose, so that no later byte goes through the gateway's
// sockets. stitch.c's header comment says how; pkg/stitch loads and drives
// it. Every type that crosses the kernel boundary is generated (bpf2go
// -type, listed in bpf2go.sh) from stitch.h.
package stitch

//go:generate bash bpf2go.sh
