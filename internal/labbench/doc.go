// Package labbench holds the lab throughput benchmarks: how fast a gateway
// in the netns lab forwards new connections and bulk TCP when it steers
// with Graylane (tc and native XDP), compared with plain routing and with
// the kernel's own DNAT load balancing (iptables statistic, nftables
// numgen), all measured in one run.
//
//	go test -run XXX -bench . -benchtime 1x -timeout 20m ./internal/labbench
//
// Every mode gets a fresh lab of the same shape, so no mode inherits
// another's conntrack state or hooks. Figures are reported as ratios to
// plain routing measured in the same run; absolute figures on a shared
// 2-core machine mean little.
package labbench
