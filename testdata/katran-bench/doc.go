// Package katranbench is a measurement harness, not product code: its
// BenchmarkKatran measures Facebook Katran's XDP balancer per packet with
// BPF_PROG_TEST_RUN. See README.md.
package katranbench
