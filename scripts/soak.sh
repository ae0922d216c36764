#!/usr/bin/env bash
# The soak test alone: SandboxSoakIT with 200 sandboxes created and destroyed one after
# another (about 6 s each under TCG on two cores: some 20 minutes), clients killed
# mid-stream, then checks that no process, file, socket, database row, thread or heap was
# left behind. SOAK_SANDBOXES=n changes the count; further arguments go to Maven.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# the core alone takes the kernel jar (and the parent pom) from the local repository
mvn -B -ntp -q install -DskipTests -pl microsandbox-kernel -am
mvn -B -ntp verify -pl microsandbox-core -Dmsb.setup.home="${MSB_HOME:-$HOME/.microsandbox}" \
  -Dtest=NONE -Dsurefire.failIfNoSpecifiedTests=false -Dit.test=SandboxSoakIT \
  -Dmsb.soak.sandboxes="${SOAK_SANDBOXES:-200}" "$@"
