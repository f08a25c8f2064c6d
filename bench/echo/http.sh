#!/usr/bin/env bash
# http.sh - wrk against minimal HTTP/1.1 responders (one fixed response,
# keep-alive), one after the other on this machine.
#
#   bench/echo/http.sh [SERVER...]         (from the top of the build tree)
#
# A SERVER is "go" (bench/go/httpd on the net package, built here, run with
# GOMAXPROCS=2; the default) or NAME=COMMAND, a command that prints
# "port N", answers every request with a fixed response on 127.0.0.1:N and
# exits at end of file on its standard input.  make bench-http runs this.
#
# Environment: WRK (wrk), WRK_THREADS (1), WRK_CONNECTIONS (100),
# WRK_SECONDS (3), GO (go).
set -u
srcdir=$(cd "$(dirname "$0")/../.." && pwd) || exit 1
WRK=${WRK:-wrk}
GO=${GO:-go}
threads=${WRK_THREADS:-1}
conns=${WRK_CONNECTIONS:-100}
secs=${WRK_SECONDS:-3}

die() {
    echo "http.sh: $*" >&2
    exit 1
}

command -v "$WRK" >/dev/null 2>&1 || die "wrk not found (set WRK=)"
[ $# -gt 0 ] || set -- go

failed=0
for s in "$@"; do
    case $s in
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
        die "unknown server \"$s\" (go or NAME=COMMAND)" ;;
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
    echo "== $name ($cmd): wrk -t$threads -c$conns -d${secs}s"
    "$WRK" -t"$threads" -c"$conns" -d"${secs}s" "http://127.0.0.1:$port/" || failed=1
    pid=$SERVER_PID
    eval "exec ${SERVER[1]}>&-"      # end of file: the server exits
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
done
exit $failed
