#!/usr/bin/env bash
# File transfer benchmark: write and read of a 64 MiB file through sandbox.fs() streams,
# beside dd/cat of the same file inside the guest. Writes bench/results/fs-latest.md.
# Usage: bench/fs.sh [rounds]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -B -ntp -o -q -pl microsandbox-core,bench -am package -DskipTests
mvn -B -ntp -o -q -pl bench dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
# the core module's fresh classes first, so an installed older core jar does not shadow them
exec java -cp "microsandbox-core/target/classes:bench/target/classes:$(cat bench/target/classpath.txt)" io.microsandbox.bench.FsBench \
  "${1:-3}" bench/results/fs-latest.md
