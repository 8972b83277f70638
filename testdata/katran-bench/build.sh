#!/usr/bin/env bash
# Compiles Katran's default balancer into balancer.bpf.o with clang-19, from
# a checkout of facebookincubator/katran (KATRAN_SRC, or the first argument).
# Katran's code is not part of this repository: see README.md.
#
# Flags follow Katran's open-source build (build_bpf_modules_opensource.sh ->
# katran/lib/Makefile-bpf), which runs with no extra DEFINES by default:
#   clang -I./usr/include -I./include -I. -DDEBUG -D__KERNEL__ \
#     -Wno-unused-value -Wno-pointer-sign -Wno-compare-distinct-pointer-types \
#     -O2 -emit-llvm -c -g balancer.bpf.c -o - | llc -march=bpf -filetype=obj
# where ./include holds a copy of katran/lib/linux_includes/*. Here it is one
# step, `clang -target bpf`; with it the host's asm/ uapi headers need the
# multiarch include dir, which the host-target clang of Katran's build finds
# on its own. And glibc's <gnu/stubs.h> (pulled in by <string.h>, which
# balancer.bpf.c includes) wants <gnu/stubs-32.h> when __x86_64__ is not
# defined, as under -target bpf; that header only lists unimplemented libc
# functions, so an empty one (made here, in a temporary directory) stands in.
set -euo pipefail
src=${1:-${KATRAN_SRC:-}}
if [ -z "$src" ] || [ ! -f "$src/katran/lib/bpf/balancer.bpf.c" ]; then
	echo "usage: $0 <katran checkout> (or KATRAN_SRC=...): no katran/lib/bpf/balancer.bpf.c there" >&2
	exit 2
fi
out=$(cd "$(dirname "$0")" && pwd)/balancer.bpf.o
shim=$(mktemp -d)
trap 'rm -rf "$shim"' EXIT
mkdir -p "$shim/gnu"
: > "$shim/gnu/stubs-32.h"
CLANG=${CLANG:-clang-19}
MULTIARCH=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
"$CLANG" -O2 -g -target bpf \
	-I"$src/katran/lib/linux_includes" -I"$src" -I/usr/include/"$MULTIARCH" -idirafter "$shim" \
	-DDEBUG -D__KERNEL__ \
	-Wno-unused-value -Wno-pointer-sign -Wno-compare-distinct-pointer-types \
	${EXTRA_CFLAGS:-} \
	-c "$src/katran/lib/bpf/balancer.bpf.c" -o "$out"
echo "built $out (katran $(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo '?'))"
