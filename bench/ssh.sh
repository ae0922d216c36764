#!/usr/bin/env bash
# SSH benchmark: OpenSSH's ssh round trip (connection, key exchange, login, command) against a
# sandbox's SSH endpoint, the in-process client's exec round trip beside Sandbox.exec, and scp of
# a 64 MiB file both ways beside fs() streams. Writes bench/results/ssh-latest.md.
# Usage: bench/ssh.sh [rounds]   (default 3)
source "$(dirname "$0")/lib.sh"
exec java -cp "$BENCH_CP" io.microsandbox.bench.SshBench "${1:-3}" bench/results/ssh-latest.md
