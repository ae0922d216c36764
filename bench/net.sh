#!/usr/bin/env bash
# Network benchmark: HTTP download throughput into the guest and TCP connection set-up latency,
# through microsandbox's policy-checked network beside QEMU's own user-mode network
# (-netdev user, "slirp"), measured the same way by the same Python client in the guest against
# the same HTTP server on this host. Writes bench/results/net.md.
# Usage: bench/net.sh [rounds] [connections]   (default 3 200)
source "$(dirname "$0")/lib.sh"
exec java -cp "$BENCH_CP" io.microsandbox.bench.NetBench "${1:-3}" "${2:-200}" bench/results/net.md
