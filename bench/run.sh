#!/usr/bin/env bash
# Measures, in one run on this machine:
#   (a0) a bare QEMU boot of Debian's generic kernel (scripts/fetch-kernel.sh) to a trivial
#        init that powers off, (a) the same with microsandbox's kernel (microsandbox-kernel),
#   (b) create() to the first exec result (the spare supervisor has booted a VM ahead), (b') the
#       same with a spare that boots none, (c) exec round trip of `true` in a running sandbox,
#   (d) host RSS of QEMU plus supervisor of an idle sandbox, (d') its QEMU after the guest
#       wrote and read 200 MB, and again once its idle guest dropped that page cache,
#   (e) density: DENSITY idle 512 MiB sandboxes started in sequence (total host RSS and per
#       sandbox), and the wall time to create PARALLEL at once.
# Prints a table and writes it to bench/results/latest.md.
# Usage: bench/run.sh [rounds] [density] [parallel]   (defaults 7, 20, 10)
source "$(dirname "$0")/lib.sh"
exec java -cp "$BENCH_CP" io.microsandbox.bench.BootBench "${1:-7}" bench/results/latest.md "${2:-20}" "${3:-10}"
