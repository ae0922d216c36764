#!/usr/bin/env bash
# Runs all tests: the unit tests and the integration tests that boot real microVMs.
# Installs what they need first (scripts/setup.sh), so it works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mvn -B -ntp verify -Dmsb.setup.home="${MSB_HOME:-$HOME/.microsandbox}" "$@"
