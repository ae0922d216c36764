#!/usr/bin/env bash
# The checkpoint benchmark, in one run on this machine:
#   (k) checkpoint() of a running, warmed 512 MiB sandbox: wall time, how long the guest was
#       paused, the memory file's size and the upper copy's allocated size;
#   (b) cold create() to the first exec result, and (r) restore() from that checkpoint to the
#       first exec result, alternating, with their ratio (goal: (r) at most 0.3x of (b)).
# Prints a table and writes it to bench/results/checkpoint.md.
# Usage: bench/checkpoint.sh [rounds]   (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mvn -B -ntp -q install -DskipTests
mvn -B -ntp -q -pl bench dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
# This checkout's own modules, not whatever copy of them the local repository holds now.
cp=$(tr ':' '\n' < bench/target/classpath.txt | grep -v '/io/microsandbox/' | paste -sd:)
exec java -cp "bench/target/classes:microsandbox-core/target/classes:microsandbox-kernel/target/classes:$cp" \
  io.microsandbox.bench.CheckpointBench "${1:-7}" bench/results/checkpoint.md
