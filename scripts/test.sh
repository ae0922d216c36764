#!/usr/bin/env bash
# Runs all tests: the unit tests and the integration tests that boot real microVMs.
# Installs what they need first (scripts/setup.sh), so it works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# a short fuzz run of the guest agent's decoder with ASan + UBSan (scripts/fuzz.sh runs 10 million)
make -s -C microsandbox-core/src/main/native fuzz OBJ="$PWD/microsandbox-core/target/native-fuzz" \
    FUZZ_ITERATIONS=200000 FUZZ_LARGE=5
mvn -B -ntp verify -Dmsb.setup.home="${MSB_HOME:-$HOME/.microsandbox}" "$@"
