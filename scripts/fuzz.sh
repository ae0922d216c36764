#!/usr/bin/env bash
# Long fuzz runs of the two decoders of untrusted input (not part of scripts/test.sh, which
# runs short versions of both):
#   * the guest agent's C decoder (agent/cbor.c, agent/proto.c: frames, bodies, exec.request,
#     core.configure) built with ASan + UBSan: microsandbox-core/src/main/native/fuzz/cbor_fuzz.c
#   * the host's FrameCodec.read, with the supervisor's heap (-Xmx64m): FrameFuzz in the
#     core module's test sources
# FUZZ_ITERATIONS inputs each (default 10,000,000), FUZZ_SEED (default 1); extra arguments
# go to mvn (e.g. -o). Prints counts and throughput; exits non-zero on any finding.
set -uo pipefail
cd "$(dirname "$0")/.."
N="${FUZZ_ITERATIONS:-10000000}"
SEED="${FUZZ_SEED:-1}"
status=0

echo "== C: the agent's decoder with ASan + UBSan, $N inputs, seed $SEED"
start=$(date +%s)
if ! make -s -C microsandbox-core/src/main/native fuzz OBJ="$PWD/microsandbox-core/target/native-fuzz" \
        FUZZ_ITERATIONS="$N" FUZZ_SEED="$SEED"; then
    echo "C fuzz: FINDING (see above)"
    status=1
fi
echo "C fuzz: $(( $(date +%s) - start )) s"

echo "== Java: FrameCodec.read with the supervisor's heap, $N inputs, seed $SEED"
start=$(date +%s)
# the core alone takes the kernel jar (and the parent pom) from the local repository
mvn -B -ntp -q install -DskipTests -pl microsandbox-kernel -am "$@" || exit 2
mvn -B -ntp -q -pl microsandbox-core test-compile "$@" || exit 2
# Maven's own report of the non-zero exit is filtered out; the fuzzer's report stays
mvn -B -ntp -q -pl microsandbox-core exec:exec -Dexec.executable=java -Dexec.classpathScope=test \
    "-Dexec.args=-Xmx64m -Xss512k -XX:+UseSerialGC -cp %classpath io.microsandbox.runtime.agent.FrameFuzz $N $SEED" \
    "$@" 2>&1 | grep --line-buffered -v -e '^\[ERROR\]' -e '^[[:space:]]*at ' -e '^org\.apache\.commons\.exec'
if [ "${PIPESTATUS[0]}" -ne 0 ]; then
    echo "Java fuzz: FINDING (see above)"
    status=1
fi
echo "Java fuzz: $(( $(date +%s) - start )) s"
exit $status
