#!/usr/bin/env bash
# Sets up the runtime, builds the project and runs the HelloSandbox sample: it boots a
# sandbox from the Debian test image and runs Python in it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mvn -B -ntp -q install -DskipTests
mvn -B -ntp -q -pl samples dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
exec java -cp "samples/target/classes:$(cat samples/target/classpath.txt)" io.microsandbox.samples.HelloSandbox "$@"
