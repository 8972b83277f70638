#!/usr/bin/env bash
# Alternating per-packet runs in one window: Graylane's BenchmarkPerPacket,
# then Katran's balancer measured the same way, PAIRS times (default 3),
# both pinned to CPU 1. Run as root from anywhere, after ./build.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pairs=${PAIRS:-3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && go test -c -o "$tmp/datapath.test" ./pkg/datapath)
(cd "$here" && go test -c -o "$tmp/katran.test" .)
for i in $(seq "$pairs"); do
	echo "=== pair $i graylane"
	(cd "$root/pkg/datapath" && taskset -c 1 "$tmp/datapath.test" -test.run XXX -test.bench 'PerPacket$' -test.benchtime 20000x)
	echo "=== pair $i katran"
	(cd "$here" && taskset -c 1 "$tmp/katran.test" -test.run XXX -test.bench Katran -test.benchtime 20000x)
done
