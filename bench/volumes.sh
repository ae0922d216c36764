#!/usr/bin/env bash
# Volume benchmark: sequential write/read MB/s and small-file creates/s in a bind mount
# (virtio-9p), beside the upper disk, an ext4 disk volume and a tmpfs, measured in the guest.
# Writes bench/results/volumes.md. Usage: bench/volumes.sh [rounds]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -B -ntp -o -q -pl microsandbox-core,bench -am package -DskipTests
mvn -B -ntp -o -q -pl bench dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
# the core module's fresh classes first, so an installed older core jar does not shadow them
exec java -cp "microsandbox-core/target/classes:bench/target/classes:$(cat bench/target/classpath.txt)" io.microsandbox.bench.VolumeBench \
  "${1:-3}" bench/results/volumes.md
