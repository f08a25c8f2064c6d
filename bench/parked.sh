#!/bin/sh
# shellcheck disable=SC2086 # $tmo is split on purpose.
# parked.sh - resident memory of many parked tasks against as many parked
# goroutines ('make bench-parked' calls this).
#
#   bench/parked.sh [bench/bench_parked]
#
# Run it from the top of a configured build tree, after make.  It builds
# bench/go/parked (standard library only, offline) into bench/go-parked,
# then runs bench_parked and go-parked PASSES times each, alternating
# (libchan first on odd passes, Go first on even ones), each run in a
# process of its own, and prints the median of each line over the passes
# and the ratio libchan/Go (below 1: libchan uses less).
#
# Knobs, from the environment: PARKED=100000 (tasks and goroutines; the
# memory needed is about 4.5 KB per task and 2.7 KB per goroutine, so
# 1000000 wants some 7 GB free), PASSES=3, THREADS=2 (scheduler workers
# and GOMAXPROCS), WAIT=60 (seconds bench_parked waits for all to park),
# TIMEOUT=600, GO=go, RESULTS=bench/parked-results.tsv (raw lines, with
# the pass number in front).  Exit status: 1 if a build or a run failed.
set -u

PARKED=${PARKED:-100000}
PASSES=${PASSES:-3}
THREADS=${THREADS:-2}
WAIT=${WAIT:-60}
TIMEOUT=${TIMEOUT:-600}
GO=${GO:-go}
RESULTS=${RESULTS:-bench/parked-results.tsv}

srcdir=$(cd "$(dirname "$0")/.." && pwd) || exit 1
builddir=$(pwd)
prog=${1:-bench/bench_parked}

die() {
    echo "parked.sh: $*" >&2
    exit 1
}

[ -x "$prog" ] || die "$prog is not built (run make first)"
if [ -z "$GO" ] || ! command -v "$GO" >/dev/null 2>&1; then
    die "Go not found (install it, e.g. apt-get install golang-go, or set GO=/path/to/go)"
fi
tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/libchan-parked.XXXXXX") || exit 1
trap 'rm -rf "$tmpdir"' EXIT
trap 'exit 1' INT TERM
gocache=${GOCACHE:-$(env GOFLAGS= "$GO" env GOCACHE 2>/dev/null)}
if [ -z "$gocache" ] || [ "$gocache" = off ] || ! mkdir -p "$gocache" 2>/dev/null ||
    [ ! -w "$gocache" ]; then
    gocache="$tmpdir/gocache"
    if [ -z "${HOME:-}" ] || [ ! -w "$HOME" ]; then
        HOME=$tmpdir
        export HOME
    fi
fi
mkdir -p bench || exit 1
gobin="$builddir/bench/go-parked"
(cd "$srcdir/bench/go" &&
    env GOCACHE="$gocache" GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on \
        CGO_ENABLED=0 "$GO" build -o "$gobin" ./parked) >&2 || die "go build failed"

tmo=
command -v timeout >/dev/null 2>&1 && tmo="timeout $TIMEOUT"
echo "== parked: $(date -u '+%Y-%m-%d %H:%M UTC'), $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPUs, $(uname -sr)"
echo "== tasks=$PARKED passes=$PASSES threads=$THREADS; $("$GO" version 2>/dev/null | cut -d' ' -f3)"

: >"$RESULTS" || exit 1
failed=0
pass=1
while [ "$pass" -le "$PASSES" ]; do
    order="c go"
    [ $((pass % 2)) -eq 0 ] && order="go c"
    printf '== pass %s/%s:' "$pass" "$PASSES" >&2
    for i in $order; do
        printf ' %s' "$i" >&2
        if [ "$i" = c ]; then
            out=$($tmo "$prog" -n "$PARKED" -j "$THREADS" -w "$WAIT" </dev/null)
        else
            out=$(GOMAXPROCS=$THREADS $tmo "$gobin" -n "$PARKED" </dev/null)
        fi
        rc=$?
        if [ $rc -ne 0 ]; then
            failed=1
            printf '(FAILED: %s rc=%s)' "$i" "$rc" >&2
        fi
        [ -n "$out" ] && printf '%s\n' "$out" | sed "s/^/$pass	/" >>"$RESULTS"
    done
    echo >&2
    pass=$((pass + 1))
done

# Lines of $RESULTS: pass, impl, what, unit, value.
echo
awk -F'\t' '
    function median(key,    m, i, j, t, a) {
        m = cnt[key]
        for (i = 1; i <= m; i++) a[i] = val[key, i]
        for (i = 2; i <= m; i++)
            for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    {
        key = $2 SUBSEP $3
        val[key, ++cnt[key]] = $5 + 0
        if (!($3 in seen)) { seen[$3] = 1; w[++nw] = $3; unit[$3] = $4 }
    }
    END {
        if (nw == 0) { print "no results"; exit }
        printf "%-18s %-10s %14s %14s %8s\n", "what", "unit", "libchan-tasks", "go", "ratio"
        for (k = 1; k <= nw; k++) {
            a = ("libchan-tasks" SUBSEP w[k]) in cnt ? median("libchan-tasks" SUBSEP w[k]) : ""
            b = ("go" SUBSEP w[k]) in cnt ? median("go" SUBSEP w[k]) : ""
            r = (a != "" && b != "" && b > 0) ? sprintf("%.2f", a / b) : "-"
            printf "%-18s %-10s %14s %14s %8s\n", w[k], unit[w[k]],
                   a == "" ? "-" : sprintf("%.1f", a), b == "" ? "-" : sprintf("%.1f", b), r
        }
        print ""
        print "median over the passes; ratio = libchan / Go (below 1, libchan uses less)"
    }' "$RESULTS"
echo "raw results: $RESULTS"

[ $failed -eq 0 ] || die "some runs failed (see above)"
exit 0
