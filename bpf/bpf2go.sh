#!/usr/bin/env bash
# Builds steer.c into package bpf's Go bindings and objects with bpf2go: run
# by `go generate` (`make generate`), never by `go build`, which uses the
# committed steer*_bpfel.{go,o} and so needs no clang.
set -euo pipefail
cd "$(dirname "$0")"

# The types bpf2go exports to Go, one a line: every type that crosses the
# kernel boundary (include/types.h). The maps' own keys and values would be
# exported without being named; naming them keeps the list the whole contract.
types=(
	# Keys and values of the maps.
	-type endpoint
	-type service
	-type frontend
	-type backend
	-type table_key
	-type table
	-type flow_key
	-type flow
	-type reply
	-type pin_key
	-type nh_key
	-type nexthop
	-type nh_slot
	-type pool_stats
	-type svc_params
	-type hist
	-type pool_latency
	-type rate
	-type wheel_head
	-type wheel_entry
	-type pending_rec
	-type pending_bucket
	-type mirror
	-type mirror_stats
	-type capture_hdr
	# Enums: indexes, flags, states and limits both sides use.
	-type pool
	-type key_kind
	-type limits
	-type service_flags
	-type flow_flags
	-type flow_state
	-type err_kind
	-type app
	-type latency_kind
	-type direction
	-type stat
	-type filter_limits
	-type wheel_limits
	-type pending_limits
	-type mirror_limits
	-type reason
	-type explain_status
	# The frame the explain program reads and answers in (BPF_PROG_TEST_RUN).
	-type explanation
	# The XDP context the tests and the timeout sweeps run programs with
	# (BPF_PROG_TEST_RUN).
	-type xdp_md
)

# The pinned toolchain and the flags of both builds.
common=(-cc clang-19 -strip llvm-strip-19 -target bpfel -go-package bpf)
cflags="-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu"

go tool bpf2go "${common[@]}" -output-stem steer -cflags "$cflags" "${types[@]}" Steer steer.c

# The upgrade test's "rebuilt binary with a changed program" (see doc.go).
# It names no -type: its maps' keys and values are exported anyway, and the
# other types are Steer's (steer_bpfel.go is in every build).
go tool bpf2go "${common[@]}" -output-stem steer_upgrade -tags graylane_upgrade_test \
	-cflags "-DGRAYLANE_UPGRADE_TEST $cflags" SteerUpgrade steer.c
