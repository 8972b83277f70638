#!/usr/bin/env bash
# Builds l7.c into package l7's Go bindings and object with bpf2go: run by
# `go generate` (`make generate` runs it for ./bpf/...), never by `go build`,
# which uses the committed l7_bpfel.{go,o} and so needs no clang.
set -euo pipefail
cd "$(dirname "$0")"

# The types bpf2go exports to Go, one a line: every type that crosses the
# kernel boundary (l7.h).
types=(
	# Keys and values of the maps.
	-type frontend_key
	-type frontend
	-type peer
	# Enums both sides use.
	-type limits
	-type stat
)

# The same pinned toolchain and flags as ../bpf2go.sh.
common=(-cc clang-19 -strip llvm-strip-19 -target bpfel -go-package l7)
cflags="-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu"

go tool bpf2go "${common[@]}" -output-stem l7 -cflags "$cflags" "${types[@]}" L7 l7.c
