#!/usr/bin/env bash
# Measures, in one run on this machine:
#   (a0) a bare QEMU boot of Debian's generic kernel (scripts/fetch-kernel.sh) to a trivial
#        init that powers off, (a) the same with microsandbox's kernel (microsandbox-kernel),
#   (b) create() to the first exec result, (c) exec round trip of `true` in a running sandbox,
#   (d) host RSS of QEMU plus supervisor of an idle sandbox,
#   (e) density: DENSITY idle 512 MiB sandboxes started in sequence (total host RSS and per
#       sandbox), and the wall time to create PARALLEL at once.
# Prints a table and writes it to bench/results/latest.md.
# Usage: bench/run.sh [rounds] [density] [parallel]   (defaults 7, 20, 10)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mvn -B -ntp -q install -DskipTests
mvn -B -ntp -q -pl bench dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
# This checkout's own modules, not whatever copy of them the local repository holds now
# (another checkout may install over it while the bench runs), as jars, as an application
# is deployed: the supervisors then get their class-data archive (JDK 17 makes none for a
# class path with directories).
cp=$(tr ':' '\n' < bench/target/classpath.txt | grep -v '/io/microsandbox/' | paste -sd:)
own=$(ls bench/target/microsandbox-bench-*.jar microsandbox-core/target/microsandbox-core-*.jar \
  microsandbox-kernel/target/microsandbox-kernel-*.jar | grep -v -e sources -e tests | paste -sd:)
exec java -cp "$own:$cp" \
  io.microsandbox.bench.BootBench \
  "${1:-7}" bench/results/latest.md "${2:-20}" "${3:-10}"
