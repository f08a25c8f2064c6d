#!/bin/sh
# run.sh NNG_ONLY BRIDGE - 'make bench-nng': the nng bridge against nng
# alone, over tcp://127.0.0.1 with 16-byte messages, in the same run.
#
# Runs nng_only and the bridge benchmark in turn, $BENCH_NNG_RUNS times
# (default 3), and prints each run and the medians: values/s of nng alone,
# values/s through a push and a pull bridge, their ratio, and the median
# round trip of one value through two pair bridges.  $BENCH_NNG_COUNT
# values per throughput run (default 1000000), $BENCH_NNG_ROUNDS round
# trips (default 10000).  A shared or loaded machine makes every number
# noisy: say so next to any result you keep.
set -e
nng_only="$1" bridge="$2"
runs="${BENCH_NNG_RUNS:-3}"
count="${BENCH_NNG_COUNT:-1000000}"
rounds="${BENCH_NNG_ROUNDS:-10000}"
tmp=$(mktemp "${TMPDIR:-/tmp}/bench-nng.XXXXXX")
trap 'rm -f "$tmp"' EXIT
i=0
while [ "$i" -lt "$runs" ]; do
    i=$((i + 1))
    n=$("$nng_only" "$count" 16 | awk '{ print $3 }')
    out=$("$bridge" "$count" "$rounds")
    b=$(printf '%s\n' "$out" | awk '$1 == "bridge" { print $3 }')
    l=$(printf '%s\n' "$out" | awk '$1 == "latency" { print $2 }')
    echo "run $i: nng $n values/s, bridge $b values/s, round trip $l us"
    echo "$n $b $l" >>"$tmp"
done
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
mn=$(awk '{ print $1 }' "$tmp" | median)
mb=$(awk '{ print $2 }' "$tmp" | median)
ml=$(awk '{ print $3 }' "$tmp" | median)
echo "median of $runs: nng $mn values/s, bridge $mb values/s," \
    "ratio $(awk -v b="$mb" -v n="$mn" 'BEGIN { printf "%.2f", b / n }')," \
    "round trip $ml us (load average: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
