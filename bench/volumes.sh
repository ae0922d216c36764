#!/usr/bin/env bash
# Volume benchmark: sequential write/read MB/s and small-file creates/s in a bind mount
# (virtio-9p), beside the upper disk, an ext4 disk volume and a tmpfs, measured in the guest.
# Writes bench/results/volumes.md. Usage: bench/volumes.sh [rounds]   (default 3)
source "$(dirname "$0")/lib.sh"
exec java -cp "$BENCH_CP" io.microsandbox.bench.VolumeBench "${1:-3}" bench/results/volumes.md
