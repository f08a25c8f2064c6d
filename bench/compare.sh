#!/bin/sh
# shellcheck disable=SC2086 # $progs, $flag and $tmo are split on purpose.
# compare.sh - libchan against Go channels, on the same machine in the
# same run ('make bench-compare' calls this).
#
#   bench/compare.sh [program ...]     (default: bench/bench_threads)
#
# Run it from the top of a configured build tree: a VPATH build directory,
# or the source directory after ./configure && make.  It brings the C
# programs up to date with make, builds bench/go/main.go (standard library
# only, offline) into bench/go-bench, then runs every workload PASSES times,
# each implementation in turn (libchan, go, go-locked; the order is
# reversed on every other pass), each run in a process of its own.  The
# table shows, per workload, the median over the passes of each run's
# median, and the ratios libchan/go and libchan/go-locked: below 1,
# libchan is faster.  go-locked locks every goroutine to an OS thread
# (runtime.LockOSThread), the thread-to-thread counterpart of libchan's
# thread mode; go is plain goroutines (GOMAXPROCS = number of CPUs).
#
# Knobs, from the environment: REPS=3 TARGET=0.3 PASSES=2 WORKLOADS=(all)
# RING=1000 RING_STACK_KIB=64 IDLE=1 TIMEOUT=300 (as for bench/run.sh),
# BCAST=10000 (bodies blocked on the channel of bcast; bench/run.sh runs
# 1000 to stay quick),
# GO=go (the Go command), RESULTS=bench/compare-results.tsv (raw lines,
# with the pass number in front), MEDIANS=bench/compare.tsv and
# SVG=bench/compare.svg in the source tree (see below).  Exit status: 1 if
# something failed to build or a run failed, else 0.
#
# The plot: the medians of the table are also written to $MEDIANS (one
# line per workload and implementation), and when gnuplot is installed
# (apt-get install gnuplot-nox) $SVG is drawn from them: per workload, the
# ratios libchan-tasks/go and libchan-threads/go-locked as bars on a log
# scale, 1 marked.  Both files live in the source tree, so that the README
# shows the latest plot.  Without gnuplot the plot is skipped with a
# message.  'bench/compare.sh --plot [MEDIANS]' only redraws $SVG from a
# medians file, running nothing.
#
# Other libraries: if the shared peer benchmarks are present on this
# machine (/work/shared/peers), /work/shared/peers/compare.sh prints
# crossbeam-channel (Rust) numbers with go and libchan beside them; this
# script does not need them.
set -u

REPS=${REPS:-3}
TARGET=${TARGET:-0.3}
PASSES=${PASSES:-2}
RING=${RING:-1000}
RING_STACK_KIB=${RING_STACK_KIB:-64}
IDLE=${IDLE:-1}
BCAST=${BCAST:-10000}
TIMEOUT=${TIMEOUT:-300}
GO=${GO:-go}
RESULTS=${RESULTS:-bench/compare-results.tsv}

srcdir=$(cd "$(dirname "$0")/.." && pwd) || exit 1
builddir=$(pwd)
progs="$*"
[ -n "$progs" ] || progs=bench/bench_threads

die() {
    echo "compare.sh: $*" >&2
    exit 1
}

MEDIANS=${MEDIANS:-$srcdir/bench/compare.tsv}
SVG=${SVG:-$srcdir/bench/compare.svg}

# plot MEDIANS SVG: the bar chart of the ratios in MEDIANS (lines of
# workload, unit, implementation, median ns or CPU-ns), drawn by gnuplot.
plot() {
    if ! command -v gnuplot >/dev/null 2>&1; then
        echo "compare.sh: gnuplot not found, $2 not redrawn (apt-get install gnuplot-nox)" >&2
        return 0
    fi
    pdir=$(mktemp -d "${TMPDIR:-/tmp}/libchan-plot.XXXXXX") || return 1
    awk -F'\t' '
        /^#/ { next }
        { v[$1, $3] = $4; if (!($1 in seen)) { seen[$1] = 1; w[++n] = $1 } }
        END {
            for (i = 1; i <= n; i++) {
                t = ((w[i], "libchan-tasks") in v && v[w[i], "go"] > 0) ? v[w[i], "libchan-tasks"] / v[w[i], "go"] : "NaN"
                h = ((w[i], "libchan-threads") in v && v[w[i], "go-locked"] > 0) ? v[w[i], "libchan-threads"] / v[w[i], "go-locked"] : "NaN"
                if (t != "NaN" || h != "NaN") printf "%s\t%s\t%s\n", w[i], t, h
            }
        }' "$1" >"$pdir/ratios.tsv" || { rm -rf "$pdir"; return 1; }
    if [ ! -s "$pdir/ratios.tsv" ]; then
        echo "compare.sh: no ratios in $1, $2 not redrawn" >&2
        rm -rf "$pdir"
        return 1
    fi
    cat >"$pdir/plot.gp" <<GNUPLOT
set terminal svg size 960,480 dynamic enhanced font "sans,12" background rgb "white"
set output "$pdir/out.svg"
set title "libchan against Go, per workload of make bench-compare (below 1, libchan is faster or, for idle-*, uses less CPU)"
set datafile separator "\t"
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [0.01:100]
set ytics ("0.01" 0.01, "0.1" 0.1, "0.5" 0.5, "1" 1, "2" 2, "10" 10, "100" 100)
set grid ytics
set xtics rotate by 45 right scale 0 noenhanced
set bmargin 6
set ylabel "libchan / Go (log scale)"
set key top left
set arrow from graph 0, first 1 to graph 1, first 1 nohead lw 2 lc rgb "black"
plot "$pdir/ratios.tsv" using 2:xtic(1) title "libchan tasks / goroutines" lc rgb "#1f77b4", \
     "" using 3 title "libchan threads / goroutines locked to threads" lc rgb "#ff7f0e"
GNUPLOT
    if gnuplot "$pdir/plot.gp" && mv "$pdir/out.svg" "$2"; then
        echo "plot: $2"
    else
        echo "compare.sh: gnuplot failed, $2 not redrawn" >&2
    fi
    rm -rf "$pdir"
}

if [ "${1:-}" = --plot ]; then
    plot "${2:-$MEDIANS}" "$SVG"
    exit $?
fi

# ------------------------------------------------------------- build
if [ -z "${BENCH_BUILT:-}" ]; then
    [ -f Makefile ] || die "run me from the top of a configured build tree (no Makefile in $builddir)"
    make -s libchan.la $progs >&2 || die "make failed"
fi
for p in $progs; do
    [ -x "$p" ] || die "$p is not built"
done

if [ -z "$GO" ] || ! command -v "$GO" >/dev/null 2>&1; then
    die "Go not found (install it, e.g. apt-get install golang-go, or set GO=/path/to/go)"
fi
tmpdir=$(mktemp -d "${TMPDIR:-/tmp}/libchan-compare.XXXXXX") || exit 1
trap 'rm -rf "$tmpdir"' EXIT
trap 'exit 1' INT TERM
# The Go command needs a writable build cache (under $HOME by default).
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
gobin="$builddir/bench/go-bench"
(cd "$srcdir/bench/go" &&
    env GOCACHE="$gocache" GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on \
        CGO_ENABLED=0 "$GO" build -o "$gobin" .) >&2 || die "go build failed"

# --------------------------------------------------------------- run
tmo=
command -v timeout >/dev/null 2>&1 && tmo="timeout $TIMEOUT"
impls=
for p in $progs; do impls="$impls $p"; done
impls="$impls $gobin:-locked"
impls="$impls $gobin"
rimpls=
for i in $impls; do rimpls="$i $rimpls"; done

wls=${WORKLOADS:-$(set -- $progs; "$1" -l)}
ncpu=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')
model=$(sed -n 's/^model name[^:]*: *//p' /proc/cpuinfo 2>/dev/null | head -n 1)
echo "== compare: $(date -u '+%Y-%m-%d %H:%M UTC'), $ncpu CPUs${model:+, $model}, $(uname -sr)"
echo "== $("$GO" version 2>/dev/null | cut -d' ' -f3), GOMAXPROCS=${GOMAXPROCS:-$ncpu}; $(${CC:-cc} --version 2>/dev/null | head -n 1)"
echo "== reps=$REPS target=${TARGET}s passes=$PASSES ring=$RING idle=${IDLE}s bcast=$BCAST"

: >"$RESULTS" || exit 1
failed=0
pass=1
while [ "$pass" -le "$PASSES" ]; do
    order=$impls
    [ $((pass % 2)) -eq 0 ] && order=$rimpls
    printf '== pass %s/%s:' "$pass" "$PASSES" >&2
    for wl in $wls; do
        printf ' %s' "$wl" >&2
        for i in $order; do
            cmd=${i%%:*}
            flag=
            case $i in *:*) flag=${i#*:} ;; esac
            out=$($tmo "$cmd" $flag -r "$REPS" -t "$TARGET" -n "$RING" \
                -s "$RING_STACK_KIB" -i "$IDLE" -b "$BCAST" "$wl" </dev/null)
            rc=$?
            if [ $rc -ne 0 ]; then
                failed=1
                printf '(FAILED: %s %s rc=%s)' "$(basename "$cmd")" "$flag" "$rc" >&2
            fi
            [ -n "$out" ] && printf '%s\n' "$out" | sed "s/^/$pass	/" >>"$RESULTS"
        done
    done
    echo >&2
    pass=$((pass + 1))
done

# ------------------------------------------------------------- table
# Lines of $RESULTS: pass, impl, workload, unit, median, min, max, reps, n.
echo
awk -F'\t' -v medians="$MEDIANS.tmp" '
    function fmt(x) {
        if (x == "") return "-"
        x += 0
        return x >= 1e6 ? sprintf("%.3g", x) : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x))
    }
    function median(key,    k, m, i, j, t, a) {
        m = cnt[key]
        for (i = 1; i <= m; i++) a[i] = val[key, i]
        for (i = 2; i <= m; i++)
            for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
        return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
    }
    {
        key = $2 SUBSEP $3
        val[key, ++cnt[key]] = $5 + 0
        if (!($3 in seenw)) { seenw[$3] = 1; w[++nw] = $3; unit[$3] = $4 }
        if (!($2 in seeni)) { seeni[$2] = 1; im[++ni] = $2 }
    }
    END {
        if (nw == 0) { print "no results"; exit }
        # libchan implementations first, then go and go-locked.
        nl = 0
        for (i = 1; i <= ni; i++) if (im[i] ~ /^libchan/) lc[++nl] = im[i]
        ng = 0
        if ("go" in seeni) gv[++ng] = "go"
        if ("go-locked" in seeni) gv[++ng] = "go-locked"
        hdr = sprintf("%-14s %-9s", "workload", "unit")
        for (i = 1; i <= nl; i++) hdr = hdr sprintf(" %16s", lc[i])
        for (j = 1; j <= ng; j++) hdr = hdr sprintf(" %10s", gv[j])
        for (i = 1; i <= nl; i++) for (j = 1; j <= ng; j++) {
            short = lc[i]; sub(/^libchan-/, "", short)
            hdr = hdr sprintf(" %18s", short "/" gv[j])
        }
        print hdr
        for (k = 1; k <= nw; k++) {
            wl = w[k]
            line = sprintf("%-14s %-9s", wl, unit[wl])
            for (i = 1; i <= nl; i++) { m[lc[i]] = (lc[i] SUBSEP wl) in cnt ? median(lc[i] SUBSEP wl) : ""; line = line sprintf(" %16s", fmt(m[lc[i]])) }
            for (j = 1; j <= ng; j++) { m[gv[j]] = (gv[j] SUBSEP wl) in cnt ? median(gv[j] SUBSEP wl) : ""; line = line sprintf(" %10s", fmt(m[gv[j]])) }
            for (i = 1; i <= nl; i++) for (j = 1; j <= ng; j++) {
                a = m[lc[i]]; b = m[gv[j]]
                if (a == "" || b == "" || b <= 0) { line = line sprintf(" %18s", "-"); continue }
                r = a / b
                line = line sprintf(" %18s", r >= 100 ? sprintf("%.0f", r) : (r >= 10 ? sprintf("%.1f", r) : sprintf("%.2f", r)))
                if (wl !~ /^idle/ && wl != "ring-spawn" && r > 0) { lg[i, j] += log(r); ln[i, j]++ }
            }
            print line
        }
        print "# workload\tunit\timplementation\tmedian" > medians
        for (k = 1; k <= nw; k++)
            for (i = 1; i <= ni; i++)
                if ((im[i] SUBSEP w[k]) in cnt)
                    printf "%s\t%s\t%s\t%s\n", w[k], unit[w[k]], im[i], median(im[i] SUBSEP w[k]) > medians
        close(medians)
        print ""
        print "ratio = libchan median / Go median (median over passes of per-run medians); below 1, libchan is faster"
        for (i = 1; i <= nl; i++) for (j = 1; j <= ng; j++)
            if (ln[i, j] > 0)
                printf "geometric mean of %s/%s over %d workloads (idle and ring-spawn left out): %.2f\n",
                       lc[i], gv[j], ln[i, j], exp(lg[i, j] / ln[i, j])
    }' "$RESULTS"
echo "raw results: $RESULTS"
if [ -s "$MEDIANS.tmp" ] && mv "$MEDIANS.tmp" "$MEDIANS"; then
    echo "medians: $MEDIANS"
    plot "$MEDIANS" "$SVG"
else
    rm -f "$MEDIANS.tmp"
fi

[ $failed -eq 0 ] || die "some runs failed (see above)"
exit 0
