#!/usr/bin/env bash
# The checkpoint benchmark, in one run on this machine:
#   (k) checkpoint() of a running, warmed 512 MiB sandbox: wall time, how long the guest was
#       paused, the memory file's size and the upper copy's allocated size;
#   (b) cold create() to the first exec result, and (r) restore() from that checkpoint to the
#       first exec result, alternating, with their ratio (goal: (r) at most 0.3x of (b));
#       neither finds a VM started ahead by a spare;
#   (r') restores of that checkpoint in a row, 3 s apart, as a pool refills: each finds QEMU
#       started ahead by the home's spare with the checkpoint's memory.
# Prints a table and writes it to bench/results/checkpoint.md.
# Usage: bench/checkpoint.sh [rounds]   (default 7)
source "$(dirname "$0")/lib.sh"
exec java -cp "$BENCH_CP" io.microsandbox.bench.CheckpointBench "${1:-7}" bench/results/checkpoint.md
