#!/bin/sh
# run.sh - run the benchmark programs once each per workload and print one
# table, with the ratio to the previous run ('make bench' calls this).
#
#   bench/run.sh [program ...]      (default: bench/bench_threads)
#
# Run it from the top of the build tree, after 'make'.  Knobs, from the
# environment:
#   REPS=5          measured runs per workload (the table shows their median)
#   TARGET=0.3      seconds per measured run (iteration counts are calibrated)
#   WORKLOADS=...   names to run (default: all; 'bench/bench_threads -l')
#   RING=1000       w5: threads in the ring
#   RING_STACK_KIB=64  w5: stack per ring thread
#   IDLE=1          idle: seconds blocked per run
#   BCAST=1000      bcast: bodies blocked on the channel that is closed
#   TIMEOUT=300     seconds before one workload is declared hung
#   RESULTS=bench/last-results.tsv  where results are kept; the previous
#                   file is what the ratios compare with, and is moved to
#                   prev-results.tsv beside it
#   FAIL_ON_REGRESSION=1  exit 1 when a workload got more than 2x slower
# Exit status: 1 if a program failed or a result check failed, else 0.
set -u

REPS=${REPS:-5}
TARGET=${TARGET:-0.3}
RING=${RING:-1000}
RING_STACK_KIB=${RING_STACK_KIB:-64}
IDLE=${IDLE:-1}
BCAST=${BCAST:-1000}
TIMEOUT=${TIMEOUT:-300}
RESULTS=${RESULTS:-bench/last-results.tsv}
FAIL_ON_REGRESSION=${FAIL_ON_REGRESSION:-0}

progs="$*"
[ -n "$progs" ] || progs=bench/bench_threads
dir=$(dirname "$RESULTS")
mkdir -p "$dir" || exit 1
new="$dir/new-results.tsv"
: >"$new" || exit 1

tmo=
if command -v timeout >/dev/null 2>&1; then
    tmo="timeout $TIMEOUT"
fi

ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
model=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "== bench: $(date -u '+%Y-%m-%d %H:%M UTC'), $ncpu CPUs${model:+, $model}, $(uname -sr)"
echo "== reps=$REPS target=${TARGET}s ring=$RING x ${RING_STACK_KIB} KiB idle=${IDLE}s bcast=$BCAST"

failed=0
for prog in $progs; do
    if [ ! -x "$prog" ]; then
        echo "run.sh: $prog is not built (run make first)" >&2
        exit 1
    fi
    wls=${WORKLOADS:-$("$prog" -l)}
    printf '== %s:' "$(basename "$prog")" >&2
    for wl in $wls; do
        printf ' %s' "$wl" >&2
        out=$($tmo "$prog" -r "$REPS" -t "$TARGET" -n "$RING" -s "$RING_STACK_KIB" \
            -i "$IDLE" -b "$BCAST" "$wl" </dev/null)
        rc=$?
        [ -n "$out" ] && printf '%s\n' "$out" >>"$new"
        if [ $rc -ne 0 ]; then
            failed=1
            [ $rc -eq 124 ] && printf '(hung: %ss)' "$TIMEOUT" >&2
            printf '(FAILED rc=%s)' "$rc" >&2
            printf '%s\t%s\t-\tFAILED\t-\t-\t-\t-\n' "$(basename "$prog")" "$wl" >>"$new"
        fi
    done
    echo >&2
done

prev=
[ -s "$RESULTS" ] && prev=$RESULTS
echo
# $prev is left unquoted on purpose: when empty, awk reads only $new.
# shellcheck disable=SC2086
# Columns of a results line: impl, workload, unit, median, min, max, reps, n.
awk -F'\t' -v prevfile="$prev" -v failon="$FAIL_ON_REGRESSION" '
    function fmt(x) {
        if (x == "" || x == "-" || x == "FAILED") return x == "" ? "-" : x
        x += 0
        return x >= 1e6 ? sprintf("%.3g", x) : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x))
    }
    FILENAME == prevfile { old[$1 "|" $2] = $4; next }
    { key[++n] = $1 "|" $2; line[n] = $0 }
    END {
        printf "%-16s %-14s %-9s %10s %7s %10s %7s  %s\n", "impl", "workload", "unit",
               "median", "spread", "previous", "ratio", "note"
        regress = 0
        for (i = 1; i <= n; i++) {
            split(line[i], f, "\t")
            note = ""; ratio = "-"; spread = "-"
            if (f[4] == "FAILED") note = "FAILED"
            else if (f[4] + 0 > 0) spread = sprintf("%.0f%%", 100 * (f[6] - f[5]) / f[4])
            o = (key[i] in old) ? old[key[i]] : ""
            if (note == "" && o != "" && o != "FAILED" && o + 0 > 0) {
                r = f[4] / o
                ratio = sprintf("%.2f", r)
                if (f[2] !~ /^idle/ && f[2] != "ring-spawn") {
                    if (r > 2) { note = "REGRESSION: over 2x slower"; regress++ }
                    else if (r < 0.5) note = "over 2x faster"
                }
            }
            if (f[2] ~ /^idle/ && f[4] + 0 > 5e6) note = "over the 5 ms/s target"
            out = sprintf("%-16s %-14s %-9s %10s %7s %10s %7s  %s", f[1], f[2], f[3],
                          fmt(f[4]), spread, fmt(o), ratio, note)
            sub(/ +$/, "", out)
            print out
        }
        if (prevfile == "")
            print "(no previous results: the next run will show ratios)"
        else
            print "ratio = median / previous median (" prevfile "); above 1 is slower"
        if (regress > 0) {
            print regress " workload(s) more than 2x slower than the previous run"
            if (failon == 1) exit 3
        }
    }' $prev "$new"
arc=$?

# Keep the new results (not the failures), plus the previous ones of
# workloads not run now.
if [ -n "$prev" ]; then
    cp "$RESULTS" "$dir/prev-results.tsv"
fi
# shellcheck disable=SC2086
awk -F'\t' 'FILENAME != ARGV[ARGC - 1] { if ($4 != "FAILED") { seen[$1 "|" $2] = 1; print }; next }
            $4 != "FAILED" && !(($1 "|" $2) in seen)' "$new" ${prev:-/dev/null} >"$new.tmp" &&
    mv "$new.tmp" "$RESULTS"
rm -f "$new"

[ $failed -eq 0 ] || { echo "run.sh: some workloads failed (see above)" >&2; exit 1; }
[ $arc -eq 0 ] || exit 1
exit 0
