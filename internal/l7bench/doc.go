// Package l7bench measures header-routed HTTP through the lab's gateway
// (issue 22's benchmarks): Graylane's L7 services against HAProxy and
// nginx doing the same on the same gateway, and against plain routing and
// a Graylane L4 service. Its code is the benchmark (BenchmarkL7, in the
// test files); this file documents it.
//
// # Running it
//
// As root, with haproxy, nginx and ethtool installed (`make deps`), one
// run at a time on the machine (labs share its CPUs, so concurrent lab
// benchmarks measure each other):
//
//	flock /tmp/graylane-lab.lock go test -run XXX -bench . -benchtime 1x ./internal/l7bench
//
// About 4 minutes with the defaults (3 rounds; 2 CPUs). L7BENCH_ROUNDS sets the
// rounds, L7BENCH_BULK_MIB the bulk download (default 1024), and
// L7BENCH_MODES (comma-separated) the modes besides routing, the base:
// default graylane-l4,haproxy,nginx,graylane-l7 (the L7 service with the
// agent's default l7.splice: the stitch where the kernel runs it);
// graylane-l7-copy is it with l7.splice: copy, graylane-l7-ksplice with
// kernel (the sockmap splice), graylane-l7-stitch with stitch (the same as
// the default where the stitch runs, but failing where it cannot);
// graylane-l7-accept is the agent with l7.accept: kernel (the stitch
// program answers, decides and connects: pkg/stitch accept.go), and
// graylane-l7-kernel the same kernel accept set up by the benchmark
// itself, without an agent (its program and maps, its scan).
//
// # Modes
//
// Every mode is measured in a fresh lab (netlab: client, gateway,
// backends s0, s1 (stable) and c0 (canary), each serving
// netlab.StartBenchHTTP), one after the other in each round, with
// routing measured first and last:
//
//   - routing: the client sends each request straight to a backend of
//     the right pool (the gateway only forwards);
//   - graylane-l4: an agent (tc mode) with two L4 services, VIP:80 over
//     the stable pool and VIP:81 over the canary; the client picks the
//     port (no header is read);
//   - haproxy: HAProxy on the gateway, `mode http`, `acl canary
//     hdr(x-canary) -m str v2`, use_backend canary else stable,
//     `http-reuse never` (a backend connection per client connection),
//     `option splice-auto`;
//   - nginx: nginx on the gateway, `map $http_x_canary $pool`,
//     `proxy_pass http://$pool`, HTTP/1.1 to the backends; on VIP:80 no
//     upstream keepalive (a backend connection per client connection),
//     on VIP:82 (the keep-alive and bulk runs) `keepalive 32`, so that
//     keep-alive requests do not each open a backend connection;
//   - graylane-l7: an agent (tc mode) with an L7 service on VIP:80, `app:
//     http`, match header X-Canary value v2 -> canary, weight 0. If the
//     agent does not serve it (the L7 path not in this build), the mode
//     is logged as skipped and the others go on.
//
// HAProxy and nginx run as the benchmark's own processes with their
// configuration in a temporary directory; the gateway owns the VIP for
// them (a /32 on its loopback). Both use every CPU (nginx
// worker_processes auto, HAProxy's default threads).
//
// # Figures
//
// Per mode and lab, in this order:
//
//   - conn/s: 6000 new connections, 32 at a time, each one HTTP/1.1 GET
//     with Connection: close (every second one with X-Canary: v2); the
//     client waits for the server's close. Every answer names its
//     backend and must come from the right pool, or the run fails;
//   - p50, p99: new connections at a fixed 500/s for 3 s (an open loop),
//     each timed from the start of connect to the end of its answer;
//     +p50 L4 and +p99 L4 subtract graylane-l4's in the same round: the
//     first request's added latency;
//   - kept rq/s: 4 keep-alive connections (2 with X-Canary: v2) sending
//     requests back to back for 2 s after their first request;
//   - Gbit/s: one connection's first request, then a 1 GiB download
//     (/bytes/N) over it;
//   - gw µs/conn: the gateway's CPU time per new connection (6000
//     connections), with the gateway isolated on CPU 1 as
//     internal/labbench isolates it (receive packet steering), and the
//     gateway's own processes (agent, HAProxy, nginx) pinned there too:
//     the whole gateway's cost, kernel and user space. Its inverse is the
//     connections one gateway core serves. Not measured on one CPU.
//
// The end-to-end figures run client, backends and gateway on the same two
// cores, so they show a gateway's cost only as far as it takes CPU from
// the others; gw µs/conn is the gateway's own.
//
// The log has each mode's medians over rounds, and "x", the median over
// rounds of the ratio to routing within the round (routing's two
// measurements averaged; for gw µs/conn the lesser of the two, as other
// work on the gateway's core only adds to it, and x is routing's cost
// over the mode's: the mode's gateway capacity relative to routing's);
// for graylane-l7, the ratio to the better of haproxy and nginx within
// each round, for conn/s and for gateway connections per core (the
// issue's goal: >= 1.5x).
package l7bench
