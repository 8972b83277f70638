#!/usr/bin/env bash
# A/B of two builds of the data path in one window: BenchmarkPerPacket of
# the revision REV (a git worktree of it, built once) and of the working
# tree, then Katran's balancer, PAIRS times (default 3), all pinned to
# CPU 1, so that a change's effect and its ratio to Katran come from the
# same rounds. Run as root from anywhere, after ./build.sh:
#
#	testdata/katran-bench/ab.sh f367c80
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 REV" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
pairs=${PAIRS:-3}
tmp=$(mktemp -d)
cleanup() {
	git -C "$root" worktree remove --force "$tmp/old" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
git -C "$root" worktree add --quiet --detach "$tmp/old" "$1"
(cd "$tmp/old" && go test -c -o "$tmp/old.test" ./pkg/datapath)
(cd "$root" && go test -c -o "$tmp/new.test" ./pkg/datapath)
(cd "$here" && go test -c -o "$tmp/katran.test" .)
for i in $(seq "$pairs"); do
	for build in old new; do
		echo "=== pair $i graylane-$build"
		(cd "$root/pkg/datapath" && taskset -c 1 "$tmp/$build.test" -test.run XXX -test.bench 'PerPacket$' -test.benchtime 20000x)
	done
	echo "=== pair $i katran"
	(cd "$here" && taskset -c 1 "$tmp/katran.test" -test.run XXX -test.bench Katran -test.benchtime 20000x)
done
