#!/usr/bin/env bash
# SSH benchmark: OpenSSH's ssh round trip (connection, key exchange, login, command) against a
# sandbox's SSH endpoint, the in-process client's exec round trip beside Sandbox.exec, and scp of
# a 64 MiB file both ways beside fs() streams. Writes bench/results/ssh-latest.md.
# Usage: bench/ssh.sh [rounds]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -B -ntp -o -q -pl microsandbox-core,bench -am package -DskipTests
# in the reactor (-am), so the core's dependencies come from this checkout's pom, not an installed one
mvn -B -ntp -o -q -pl bench -am dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
# the core module's fresh classes first, so an installed older core jar does not shadow them
exec java -cp "microsandbox-core/target/classes:bench/target/classes:$(cat bench/target/classpath.txt)" io.microsandbox.bench.SshBench \
  "${1:-3}" bench/results/ssh-latest.md
