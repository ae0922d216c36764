#!/usr/bin/env bash
# The pool benchmark: borrow + run print(1) + return from a warm pool (SandboxTemplate), beside
# the core's exec round trip and a cold create + exec + close, in one run on this machine
# (bench/results/pool.md); then the time to refill a drained pool of N members by cold boots
# (warm-start=boot) against restores from a checkpoint (warm-start=checkpoint), written to
# bench/results/pool-refill.md.
# Usage: bench/pool.sh [round trips] [cold boots] [refill members] [refills]  (default 100 5 4 3)
source "$(dirname "$0")/lib.sh"
java -cp "$BENCH_CP" io.microsandbox.bench.PoolBench "${1:-100}" "${2:-5}" bench/results/pool.md
exec java -cp "$BENCH_CP" io.microsandbox.bench.PoolRefillBench "${3:-4}" "${4:-3}" bench/results/pool-refill.md
