#!/usr/bin/env bash
# File transfer benchmark: write and read of a 64 MiB file through sandbox.fs() streams,
# beside dd/cat of the same file inside the guest. Writes bench/results/fs-latest.md.
# Usage: bench/fs.sh [rounds]   (default 3)
source "$(dirname "$0")/lib.sh"
exec java -cp "$BENCH_CP" io.microsandbox.bench.FsBench "${1:-3}" bench/results/fs-latest.md
