#!/usr/bin/env bash
# http.sh - wrk against HTTP/1.1 servers that answer GET / with one fixed
# response (keep-alive), one after the other on this machine, with the
# same connections and duration for each, then a table of requests/s,
# p99 latency and the server's CPU time per request (user + system, from
# /proc: the figure that stays meaningful on a loaded machine), and their
# ratios to those of go (or of the first server when go is not among
# them).
#
#   bench/echo/http.sh [SERVER...]         (from the top of the build tree)
#
# A SERVER is one of
#   libchan         $HTTP_LIBCHAN, by default examples/httpd_tasks (one task
#                   per connection), run with --workers 2 --eof
#   go              bench/go/httpd on the net package, built here, run with
#                   GOMAXPROCS=2
#   NAME=COMMAND    a command that prints "port N", answers every request
#                   with a fixed response on 127.0.0.1:N and exits at end
#                   of file on its standard input
# The default is "libchan go".  make bench-http runs this script.
#
# Environment: WRK (wrk), WRK_THREADS (1), WRK_CONNECTIONS (100),
# WRK_SECONDS (3), GO (go), HTTP_LIBCHAN.  Exits 1 if a server or wrk
# failed, or wrk saw socket errors or responses other than 2xx.
set -u
srcdir=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
WRK=${WRK:-wrk}
GO=${GO:-go}
HTTP_LIBCHAN=${HTTP_LIBCHAN:-examples/httpd_tasks}
threads=${WRK_THREADS:-1}
conns=${WRK_CONNECTIONS:-100}
secs=${WRK_SECONDS:-3}

die() {
    echo "http.sh: $*" >&2
    exit 1
}

command -v "$WRK" >/dev/null 2>&1 || die "wrk not found (set WRK=)"
[ $# -gt 0 ] || set -- libchan go

# wrk prints latencies as 850.00us, 1.23ms or 1.02s: microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) u = n; else if (v ~ /ms$/) u = n * 1000
        else if (v ~ /m$/) u = n * 60e6; else if (v ~ /s$/) u = n * 1e6
        else u = -1
        printf "%.0f", u }'
}

# wrk and the server each need a descriptor per connection.
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1048576
[ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$hard" ] && ulimit -n "$hard"

# The CPU time of process $1 so far, in clock ticks (user + system).
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
hz=$(getconf CLK_TCK 2>/dev/null || echo 100)

names=()
rps=()
p99=()
cpu=()
failed=0
echo "== wrk -t$threads -c$conns -d${secs}s --latency, $(nproc) CPUs, $(uname -r)"
for s in "$@"; do
    case $s in
    libchan)
        [ -x "$HTTP_LIBCHAN" ] || die "$HTTP_LIBCHAN is not built (run me from the top of the build tree after make)"
        name=libchan; cmd="$HTTP_LIBCHAN --port 0 --workers 2 --eof" ;;
    go)
        command -v "$GO" >/dev/null 2>&1 || die "Go not found (set GO=)"
        cache=${GOCACHE:-$(env GOFLAGS= "$GO" env GOCACHE 2>/dev/null)}
        [ -n "$cache" ] || cache=$(pwd)/bench/go-cache
        mkdir -p bench
        (cd "$srcdir/bench/go" &&
            env GOCACHE="$cache" GOFLAGS=-mod=mod GOPROXY=off GO111MODULE=on \
                CGO_ENABLED=0 "$GO" build -o "$OLDPWD/bench/go-httpd" ./httpd) ||
            die "go build failed"
        name=go; cmd="env GOMAXPROCS=2 bench/go-httpd" ;;
    *=*)
        name=${s%%=*}; cmd=${s#*=} ;;
    *)
        die "unknown server \"$s\" (libchan, go or NAME=COMMAND)" ;;
    esac
    # shellcheck disable=SC2086
    coproc SERVER { exec $cmd; }
    port=
    read -r -t 20 word port <&"${SERVER[0]}" || true
    if [ "${word:-}" != port ] || [ -z "$port" ]; then
        echo "== $name: no \"port N\" from $cmd"
        kill "$SERVER_PID" 2>/dev/null
        failed=1
        continue
    fi
    echo "== $name ($cmd)"
    t0=$(cpu_ticks "$SERVER_PID")
    out=$("$WRK" -t"$threads" -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$port/")
    rc=$?
    t1=$(cpu_ticks "$SERVER_PID")
    printf '%s\n' "$out"
    r=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ { print $2 }')
    l=$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')
    if [ "$rc" != 0 ] || [ -z "$r" ] || [ -z "$l" ]; then
        echo "== $name: wrk failed (status $rc)"
        failed=1
    elif printf '%s\n' "$out" | grep -Eq 'Socket errors|Non-2xx'; then
        echo "== $name: errors (see above)"
        failed=1
    fi
    names+=("$name")
    rps+=("${r:-0}")
    p99+=("$(to_us "${l:-0us}")")
    n=$(printf '%s\n' "$out" | awk '/ requests in / { print $1 }')
    cpu+=("$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="${n:-0}" \
        'BEGIN { if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print 0 }')")
    pid=$SERVER_PID
    eval "exec ${SERVER[1]}>&-"      # end of file: the server exits
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
done

# The table: ratios to go, or to the first server (requests/s: higher is
# better; p99: lower is better).
if [ ${#names[@]} -gt 0 ]; then
    b=0
    for i in "${!names[@]}"; do [ "${names[$i]}" = go ] && b=$i; done
    echo "== summary: wrk -t$threads -c$conns -d${secs}s"
    printf '%-12s %11s %9s %11s %9s %9s %9s\n' server "requests/s" "p99 us" \
        "cpu us/req" "rps/${names[$b]}" "p99/${names[$b]}" "cpu/${names[$b]}"
    for i in "${!names[@]}"; do
        awk -v n="${names[$i]}" -v r="${rps[$i]}" -v l="${p99[$i]}" -v c="${cpu[$i]}" \
            -v r0="${rps[$b]}" -v l0="${p99[$b]}" -v c0="${cpu[$b]}" 'BEGIN {
            rr = 0; if (r0 > 0) rr = r / r0
            lr = 0; if (l0 > 0) lr = l / l0
            cr = 0; if (c0 > 0) cr = c / c0
            printf "%-12s %11.0f %9.0f %11.2f %9.2f %9.2f %9.2f\n", n, r, l, c, rr, lr, cr }'
    done
fi
exit $failed
