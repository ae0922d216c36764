# Sourced by the bench scripts: builds this checkout and sets BENCH_CP, the class path that
# runs a benchmark from this checkout's own jars, as an application is deployed: supervisors
# then get their class-data archive (JDK 17 makes none for a class path of directories), and
# another checkout installing over the local Maven repository meanwhile cannot change what runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
mvn -B -ntp -q install -DskipTests
mvn -B -ntp -q -pl bench dependency:build-classpath -Dmdep.outputFile=target/classpath.txt
BENCH_CP=$(
    { ls bench/target/microsandbox-bench-*.jar microsandbox-core/target/microsandbox-core-*.jar \
        microsandbox-kernel/target/microsandbox-kernel-*.jar \
        microsandbox-spring-boot-autoconfigure/target/microsandbox-spring-boot-autoconfigure-*.jar \
        | grep -v -e sources -e tests -e javadoc
      tr ':' '\n' < bench/target/classpath.txt | grep -v '/io/microsandbox/'
    } | paste -sd:)
export BENCH_CP
