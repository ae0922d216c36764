#!/usr/bin/env bash
# Measures, in one run on this machine: (a) a bare QEMU boot of the sandbox kernel and
# initramfs to a trivial init that powers off, (b) create() to the first exec result,
# (c) exec round trip of `true` in a running sandbox, (d) host RSS of QEMU plus supervisor
# of an idle sandbox. Prints a table and writes it to bench/results/latest.md.
# Usage: bench/run.sh [rounds]   (default 5 boots per boot measurement)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mvn -B -ntp -q install -DskipTests
mvn -B -ntp -q -pl bench dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
exec java -cp "bench/target/classes:$(cat bench/target/classpath.txt)" io.microsandbox.bench.BootBench \
  "${1:-5}" bench/results/latest.md
