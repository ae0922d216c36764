#!/usr/bin/env bash
# Network benchmark: HTTP download throughput into the guest and TCP connection set-up latency,
# through microsandbox's policy-checked network beside QEMU's own user-mode network
# (-netdev user, "slirp"), measured the same way by the same Python client in the guest against
# the same HTTP server on this host. Writes bench/results/net.md.
# Usage: bench/net.sh [rounds] [connections]   (default 3 200)
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -B -ntp -o -q -pl microsandbox-core,bench -am package -DskipTests
mvn -B -ntp -o -q -pl bench dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
# this checkout's core and kernel first, so installed older jars (a kernel without BPF) do not shadow them
exec java -cp "microsandbox-core/target/classes:microsandbox-kernel/target/classes:bench/target/classes:$(cat bench/target/classpath.txt)" io.microsandbox.bench.NetBench \
  "${1:-3}" "${2:-200}" bench/results/net.md
