#!/usr/bin/env bash
# run.sh - the echo workloads (e1 e2 e3, see echoload.c) against echo
# servers, one after the other on this machine, with a table of medians:
# requests per second, p50 and p99 latency, the server's resident memory.
#
#   bench/echo/run.sh [SERVER...]          (from the top of the build tree)
#
# A SERVER is one of
#   go              bench/go/echo, built here with Go, run with GOMAXPROCS=2
#   libchan         $ECHO_LIBCHAN, by default examples/echo_tasks (one task
#                   per connection); skipped, with a message, if missing
#   standin         bench/echo/echo_standin, a plain epoll server without
#                   libchan, for checking the load generator itself
#   NAME=COMMAND    any command that speaks the protocol of echoload.c:
#                   prints "port N", echoes, exits at end of file on stdin
# The default is "go libchan".  make bench-echo runs this script.
#
# Environment: REPS (5) runs of TARGET (0.8) seconds per workload,
# WORKLOADS ("e1 e2 e3"), GO (go), ECHO_LIBCHAN, RESULTS (raw lines,
# bench/echo-results.tsv).  Exits 1 if a server or the load generator
# failed.
set -u
srcdir=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
REPS=${REPS:-5}
TARGET=${TARGET:-0.8}
WORKLOADS=${WORKLOADS:-e1 e2 e3}
GO=${GO:-go}
ECHO_LIBCHAN=${ECHO_LIBCHAN:-examples/echo_tasks}
RESULTS=${RESULTS:-bench/echo-results.tsv}
load=bench/echo/echoload

die() {
    echo "run.sh: $*" >&2
    exit 1
}

[ -x "$load" ] || die "$load is not built (run me from the top of the build tree after make)"
[ $# -gt 0 ] || set -- go libchan

# Builds the Go echo server into bench/go-echo, offline, as compare.sh does.
build_go() {
    command -v "$GO" >/dev/null 2>&1 || { echo "  go: skipped: Go not found (set GO=)"; return 1; }
    local cache
    cache=${GOCACHE:-$(env GOFLAGS= "$GO" env GOCACHE 2>/dev/null)}
    [ -n "$cache" ] || cache=$(pwd)/bench/go-cache
    mkdir -p bench
    if ! (cd "$srcdir/bench/go" &&
        env GOCACHE="$cache" GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on \
            CGO_ENABLED=0 "$GO" build -o "$OLDPWD/bench/go-echo" ./echo) >&2; then
        echo "  go: BUILD FAILED"
        return 1
    fi
}

names=()
cmds=()
failed=0
echo "== echo servers ($(nproc) CPUs, $(uname -r)); $REPS runs of ${TARGET}s"
for s in "$@"; do
    case $s in
    go)
        build_go || { failed=1; continue; }
        names+=(go); cmds+=("env GOMAXPROCS=2 bench/go-echo")
        echo "  go: bench/go-echo ($("$GO" version | cut -d' ' -f3), GOMAXPROCS=2)" ;;
    libchan)
        prog=${ECHO_LIBCHAN%% *}
        if [ ! -x "$prog" ]; then
            echo "  libchan: skipped: $prog does not exist yet (set ECHO_LIBCHAN=)"
            continue
        fi
        names+=(libchan); cmds+=("$ECHO_LIBCHAN")
        echo "  libchan: $ECHO_LIBCHAN" ;;
    standin)
        [ -x bench/echo/echo_standin ] || die "bench/echo/echo_standin is not built"
        names+=(standin); cmds+=(bench/echo/echo_standin)
        echo "  standin: bench/echo/echo_standin (plain epoll, not libchan)" ;;
    *=*)
        names+=("${s%%=*}"); cmds+=("${s#*=}")
        echo "  ${s%%=*}: ${s#*=}" ;;
    *)
        die "unknown server \"$s\" (go, libchan, standin or NAME=COMMAND)" ;;
    esac
done

mkdir -p "$(dirname "$RESULTS")"
: >"$RESULTS"
echo "== runs"
# Workload by workload, every server in turn: the machine's speed drifts
# over minutes, and this keeps the runs compared with each other close.
for wl in $WORKLOADS; do
    for i in "${!names[@]}"; do
        # shellcheck disable=SC2086
        out=$("$load" "${names[$i]}" ${cmds[$i]} -- "$wl" "$REPS" "$TARGET" </dev/null)
        rc=$?
        printf '%s\n' "$out" | awk -F'\t' 'NF == 9' >>"$RESULTS"
        if [ $rc -ne 0 ]; then
            echo "  ${names[$i]} $wl: FAILED (exit $rc)"
            failed=1
        else
            printf '  %-10s %-3s %s req/s\n' "${names[$i]}" "$wl" \
                "$(printf '%s\n' "$out" | awk -F'\t' 'NF == 9 { printf "%s ", $6 }')"
        fi
    done
done

echo
echo "== medians (req/s of all connections together; latency of one request; server VmRSS after the run)"
printf '%-10s %-3s %10s %9s %9s %9s\n' server wl "req/s" "p50 us" "p99 us" "RSS MiB"
awk -F'\t' '
    function median(v, n,   i, j, t) {
        for (i = 2; i <= n; i++) {
            t = v[i]
            for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]
            v[j + 1] = t
        }
        return n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    {
        k = $1 SUBSEP $2
        if (!(k in n)) order[++keys] = k
        m = ++n[k]; rps[k, m] = $6; p50[k, m] = $7; p99[k, m] = $8; rss[k, m] = $9
    }
    END {
        for (o = 1; o <= keys; o++) {
            k = order[o]; m = n[k]
            for (i = 1; i <= m; i++) { a[i] = rps[k, i]; b[i] = p50[k, i]; c[i] = p99[k, i]; d[i] = rss[k, i] }
            split(k, kk, SUBSEP)
            printf "%-10s %-3s %10.0f %9.1f %9.1f %9.1f\n", kk[1], kk[2],
                median(a, m), median(b, m), median(c, m), median(d, m) / 1024
        }
    }' "$RESULTS"
echo "raw: $RESULTS"
exit $failed
