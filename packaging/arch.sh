#!/bin/sh
# Prints the Debian architecture for the Go architecture $1 (go env GOARCH).
# GOARCH=arm builds for armhf: Go's default GOARM is 7 when cross-compiling.
set -eu
case "${1:?usage: arch.sh GOARCH}" in
amd64 | arm64 | riscv64 | s390x | loong64) echo "$1" ;;
386) echo i386 ;;
arm) echo armhf ;;
ppc64le) echo ppc64el ;;
mips64le) echo mips64el ;;
mipsle) echo mipsel ;;
*)
	echo "arch.sh: no Debian architecture for GOARCH $1" >&2
	exit 1
	;;
esac
