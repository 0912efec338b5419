#!/bin/sh
# Runs every benchmark scenario REPS times (interleaved, so that a change in the machine's load
# spreads over all of them) and appends each scenario's JSON result line to OUT.
#   REPS=5 OUT=bench-results.jsonl bench/run-suite.sh
# Build first: cargo build --release -p agentvisor -p agentvisor-mock-agent -p agentvisor-bench
# DAEMON names the daemon executable (the mock agent is the `mock-agent` next to it).
set -eu
REPS=${REPS:-5}
OUT=${OUT:-bench-results.jsonl}
BENCH=${BENCH:-target/release/agentvisor-bench}
DAEMON=${DAEMON:-target/release/agentvisor}
run() {
    echo "# $*" >&2
    "$BENCH" --daemon "$DAEMON" "$@" >>"$OUT"
}
i=1
while [ "$i" -le "$REPS" ]; do
    echo "## repetition $i of $REPS" >&2
    run connections --n 10000
    run roundtrip --clients 50 --requests 1000
    run fanout --subs 1 --lines 200000
    run fanout --subs 100 --lines 20000
    run fanout --subs 1000 --lines 2000
    run fanout --subs 1 --lines 1000 --rate 100
    run fanout --subs 100 --lines 1000 --rate 100
    run fanout --subs 1000 --lines 1000 --rate 100
    run history --records 1000000
    run abuse --records 100000 --abusers 4
    run runs --projects 10 --runs 300
    i=$((i + 1))
done
