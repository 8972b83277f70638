#!/usr/bin/env bash
# Builds stitch.c into package stitch's Go bindings and object with bpf2go:
# run by `go generate` (`make generate` runs it for ./bpf/...), never by
# `go build`, which uses the committed stitch_bpfel.{go,o}.
set -euo pipefail
cd "$(dirname "$0")"

# Every type that crosses the kernel boundary (stitch.h).
types=(
	-type tuple
	-type ref
	-type dir
	-type pair
	-type stat
	-type dir_index
	-type front_key
	-type front
	-type backend_addr
	-type grant
	-type opening
	-type accept_counts
	-type accept_latency
	-type accept_pin_key
)

# The same pinned toolchain and flags as ../bpf2go.sh.
common=(-cc clang-19 -strip llvm-strip-19 -target bpfel -go-package stitch)
cflags="-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu"

go tool bpf2go "${common[@]}" -output-stem stitch -cflags "$cflags" "${types[@]}" Stitch stitch.c

# rules.h's header-rule matcher alone, for pkg/stitch's tests (rules_test.go),
# with rules.h's types.
go tool bpf2go "${common[@]}" -output-stem rulecheck -cflags "$cflags" \
	-type rules -type rule -type first RuleCheck rulecheck.c
