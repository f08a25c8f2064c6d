#!/usr/bin/env bash
# httpd.sh - examples/httpd_tasks as a real server on 127.0.0.1: exact
# response bytes, keep-alive and pipelining, files under a root and the
# escapes refused, bad and oversize requests, a client that stops in the
# middle of a request, graceful shutdown, and wrk at 1000 connections.
#
# Run by 'make check' (which exports top_builddir), or by hand from the
# build directory:  bash tests/httpd.sh
#
# The clients are bash's /dev/tcp with head and cat; wrk is used when
# installed (the wrk check is skipped, saying so, without it).  Each read
# is bounded by timeout(1), each server run by $EXAMPLE_TIMEOUT seconds
# (default 60); $EXAMPLE_RUNNER, if set, is put before the server (an
# emulator such as qemu-aarch64).  Prints one PASS, FAIL or SKIP line per
# check and exits 1 if any check failed.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
set -u
export LC_ALL=C

builddir="${top_builddir:-.}"
timeout_s="${EXAMPLE_TIMEOUT:-60}"
runner="${EXAMPLE_RUNNER:-}"
prog="$builddir/examples/httpd_tasks"
WRK=${WRK:-wrk}
failed=0
passed=0
skipped=0
T=20 # seconds a single read may take

tmp=$(mktemp -d "${TMPDIR:-/tmp}/httpd.XXXXXX") || exit 1
server_pid=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

if [ ! -x "$prog" ]; then
    echo "FAIL: $prog not built"
    exit 1
fi

pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() {
    echo "FAIL: $1"
    failed=$((failed + 1))
}

# check LABEL FUNC ARGS...: FUNC prints why it failed and returns 1.  It
# runs in this shell (not a subshell): it may wait for the server.
check() {
    label="$1"
    shift
    if "$@" >"$tmp/msg" 2>&1; then
        pass "$label"
    else
        fail "$label"
        sed -n '1,40s/^/  /p' "$tmp/msg"
    fi
}

# ---------------------------------------------------------------- files
root="$tmp/root"
mkdir -p "$root/sub" "$tmp/outside"
printf 'hello from a file\n' >"$root/hello.txt"
printf 'secret\n' >"$tmp/outside/secret"
printf 'secret\n' >"$tmp/secret"
ln -s "$tmp/outside/secret" "$root/link"
ln -s "$tmp/outside" "$root/dirlink"
mkdir "$root/dir"
# A file of three and a half pieces of 64 KiB, every byte value in it.
awk 'BEGIN { for (i = 0; i < 229376; i++) printf "%c", (i * 7 + int(i / 256)) % 256 }' \
    >"$root/sub/big.bin"
[ "$(wc -c <"$root/sub/big.bin")" = 229376 ] || { echo "FAIL: cannot make big.bin"; exit 1; }

# ---------------------------------------------------------------- server
# start_server LOG ARGS...: starts the server with stdin from $tmp/in (a
# FIFO this shell holds open on fd 8) and sets server_pid and port.
start_server() {
    log="$1"
    shift
    rm -f "$tmp/in"
    mkfifo "$tmp/in" || return 1
    # shellcheck disable=SC2086
    timeout -k 10 "$timeout_s" $runner "$prog" "$@" <"$tmp/in" >"$log" 2>"$log.err" &
    server_pid=$!
    exec 8>"$tmp/in"
    port=""
    for _ in $(seq 1 $((timeout_s * 10))); do
        port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$log")
        [ -n "$port" ] && return 0
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "FAIL: the server never said where it listens"
    sed 's/^/  stderr: /' "$log.err"
    exit 1
}

# Connection helpers on descriptor numbers kept in variables.
conn_open() { exec {cfd}<>"/dev/tcp/127.0.0.1/$port"; }
conn_close() { exec {cfd}>&-; }
# recv_n N FILE: exactly N bytes (or fewer if the server closed).
recv_n() { timeout "$T" head -c "$1" <&"$cfd" >"$2"; }
# recv_all FILE: everything until the server closes (124: it did not).
recv_all() { timeout "$T" cat <&"$cfd" >"$1"; }

# same FILE EXPECTED: the file holds exactly the bytes of EXPECTED.
same() {
    printf '%s' "$2" >"$1.want"
    cmp -s "$1" "$1.want" && return 0
    echo "got:"
    head -c 600 "$1" | od -c | sed -n '1,12p'
    echo "want:"
    od -c "$1.want" | sed -n '1,12p'
    return 1
}

page=$'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, world\n'
page_close=$'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, world\n'
page_keep=$'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nHello, world\n'
get=$'GET / HTTP/1.1\r\nHost: t\r\n\r\n'
get_close=$'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'

# status_of REQUEST WANT_STATUS_LINE: one request, then the server must
# answer with that status line and close the connection.
status_closes() {
    conn_open || return 1
    printf '%s' "$1" >&"$cfd"
    recv_all "$tmp/st"
    rc=$?
    conn_close
    [ "$rc" = 0 ] || { echo "no close (status $rc)"; return 1; }
    got=$(head -n 1 "$tmp/st" | tr -d '\r')
    [ "$got" = "$2" ] || { echo "status line '$got', want '$2'"; return 1; }
}

# status_keeps REQUEST WANT_STATUS_LINE: the status, and the connection
# still serves the fixed page afterwards.
status_keeps() {
    conn_open || return 1
    printf '%s%s' "$1" "$get_close" >&"$cfd"
    recv_all "$tmp/st"
    rc=$?
    conn_close
    [ "$rc" = 0 ] || { echo "no close (status $rc)"; return 1; }
    got=$(head -n 1 "$tmp/st" | tr -d '\r')
    [ "$got" = "$2" ] || { echo "status line '$got', want '$2'"; return 1; }
    grep -q secret "$tmp/st" && { echo "the secret was served"; return 1; }
    tail -c ${#page_close} "$tmp/st" >"$tmp/st.tail"
    same "$tmp/st.tail" "$page_close" || { echo "(the request after it)"; return 1; }
}

# ---------------------------------------------------------------- checks
keepalive() {
    conn_open || return 1
    printf '%s' "$get" >&"$cfd"
    recv_n ${#page} "$tmp/k1" && same "$tmp/k1" "$page" || { echo "first response"; return 1; }
    printf '%s' "$get" >&"$cfd"
    recv_n ${#page} "$tmp/k2" && same "$tmp/k2" "$page" || { echo "second response"; return 1; }
    # Three pipelined in one write, the last one closing.
    printf '%s%s%s' "$get" "$get" "$get_close" >&"$cfd"
    recv_all "$tmp/k3" || { echo "no close after Connection: close"; return 1; }
    conn_close
    same "$tmp/k3" "$page$page$page_close"
}

http10() {
    conn_open || return 1
    printf 'GET / HTTP/1.0\r\n\r\n' >&"$cfd"
    recv_all "$tmp/h1" || { echo "HTTP/1.0 not closed"; return 1; }
    conn_close
    same "$tmp/h1" "$page_close" || return 1
    conn_open || return 1
    printf 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n' >&"$cfd"
    recv_n ${#page_keep} "$tmp/h2" && same "$tmp/h2" "$page_keep" || return 1
    printf 'GET /?x=1 HTTP/1.0\r\n\r\n' >&"$cfd"
    recv_all "$tmp/h3" || { echo "HTTP/1.0 not closed"; return 1; }
    conn_close
    same "$tmp/h3" "$page_close"
}

head_page() {
    conn_open || return 1
    printf 'HEAD / HTTP/1.1\r\nHost: t\r\n\r\n%s' "$get_close" >&"$cfd"
    recv_all "$tmp/hd" || return 1
    conn_close
    same "$tmp/hd" "${page%Hello, world$'\n'}$page_close"
}

file_small() {
    conn_open || return 1
    printf 'GET /files/hello.txt HTTP/1.1\r\nHost: t\r\n\r\n' >&"$cfd"
    want=$'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n\r\nhello from a file\n'
    recv_n ${#want} "$tmp/f1" && same "$tmp/f1" "$want" || return 1
    # The same connection goes on; HEAD gives the headers alone.
    printf 'HEAD /files/hello.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' >&"$cfd"
    recv_all "$tmp/f2" || return 1
    conn_close
    same "$tmp/f2" $'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 18\r\nConnection: close\r\n\r\n'
}

file_big() {
    conn_open || return 1
    printf 'GET /files/sub/big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n' >&"$cfd"
    recv_all "$tmp/big" || return 1
    conn_close
    printf 'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 229376\r\nConnection: close\r\n\r\n' >"$tmp/big.want"
    cat "$root/sub/big.bin" >>"$tmp/big.want"
    cmp "$tmp/big" "$tmp/big.want"
}

# A client sending bytes that are no HTTP at all, then the server must
# still serve the fixed page to another client.
garbage_then_served() {
    conn_open || return 1
    printf '\001\002\003garbage\377\r\n\r\n' >&"$cfd"
    recv_all "$tmp/g" || { echo "garbage: not closed"; return 1; }
    conn_close
    got=$(head -n 1 "$tmp/g" | tr -d '\r')
    [ "$got" = "HTTP/1.1 400 Bad Request" ] || { echo "garbage: '$got'"; return 1; }
    conn_open || return 1
    printf '%s' "$get_close" >&"$cfd"
    recv_all "$tmp/g2" || return 1
    conn_close
    same "$tmp/g2" "$page_close"
}

# A head longer than 8 KiB (a request line, or header fields).
oversize() {
    long=$(head -c 9000 /dev/zero | tr '\0' a)
    status_closes "GET /$long HTTP/1.1"$'\r\n' "HTTP/1.1 414 URI Too Long" || return 1
    status_closes $'GET / HTTP/1.1\r\nHost: t\r\nX-Big: '"$long"$'\r\n\r\n' \
        "HTTP/1.1 431 Request Header Fields Too Large" || return 1
    # Just under the limit is fine.
    fill=$(head -c 8000 /dev/zero | tr '\0' a)
    status_closes $'GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Fill: '"$fill"$'\r\n\r\n' \
        "HTTP/1.1 200 OK"
}

# A client that stops in the middle of its request head gets 408 and is
# closed, no sooner than --header-ms after it began, while another is
# served; a client that sends nothing is closed after --idle-ms.  Both
# wait at once.
# Milliseconds since the epoch, without a fork where bash has
# EPOCHREALTIME.
now_ms() {
    if [ -n "${EPOCHREALTIME:-}" ]; then
        t=${EPOCHREALTIME/[.,]/}
        echo $((t / 1000))
    else
        echo $(($(date +%s%N) / 1000000))
    fi
}

stalled() {
    exec {stall}<>"/dev/tcp/127.0.0.1/$port" || return 1
    start_idle=$(now_ms) # before the server can have accepted it
    exec {idle}<>"/dev/tcp/127.0.0.1/$port" || return 1
    start=$(now_ms) # before the server can have read the first bytes
    printf 'GET / HTTP/1.1\r\nHost: t\r\n' >&"$stall"
    conn_open || return 1
    printf '%s' "$get_close" >&"$cfd"
    recv_all "$tmp/s1" || { echo "another client was not served"; return 1; }
    conn_close
    same "$tmp/s1" "$page_close" || return 1
    timeout "$T" cat <&"$stall" >"$tmp/s2" || { echo "stalled client not closed"; return 1; }
    ms=$(($(now_ms) - start))
    exec {stall}>&-
    got=$(head -n 1 "$tmp/s2" | tr -d '\r')
    [ "$got" = "HTTP/1.1 408 Request Timeout" ] || { echo "stalled client: '$got'"; return 1; }
    [ "$ms" -ge "$header_ms" ] || { echo "closed after $ms ms, before $header_ms ms"; return 1; }
    timeout "$T" cat <&"$idle" >"$tmp/s3" || { echo "idle client not closed"; return 1; }
    ms=$(($(now_ms) - start_idle))
    exec {idle}>&-
    [ ! -s "$tmp/s3" ] || { echo "idle client got bytes"; return 1; }
    [ "$ms" -ge "$idle_ms" ] || { echo "idle closed after $ms ms, before $idle_ms ms"; return 1; }
}

wrk_run() {
    conns="$1" path="$2" secs="$3"
    out=$("$WRK" -t2 -c"$conns" -d"${secs}s" --timeout 10s "http://127.0.0.1:$port$path" 2>&1)
    rc=$?
    printf '%s\n' "$out" | sed 's/^/  wrk: /'
    [ "$rc" = 0 ] || { echo "wrk exit status $rc"; return 1; }
    n=$(printf '%s\n' "$out" | sed -n 's/^ *\([0-9][0-9]*\) requests in .*/\1/p')
    [ -n "$n" ] && [ "$n" -gt 0 ] || { echo "no requests done"; return 1; }
    if printf '%s\n' "$out" | grep -q 'Socket errors'; then
        echo "socket errors"
        return 1
    fi
    if printf '%s\n' "$out" | grep -q 'Non-2xx'; then
        echo "non-2xx responses"
        return 1
    fi
}

still_serves() {
    conn_open || return 1
    printf '%s' "$get_close" >&"$cfd"
    recv_all "$tmp/ss" || return 1
    conn_close
    same "$tmp/ss" "$page_close"
}

# ---------------------------------------------------------------- run
header_ms=1500 idle_ms=2500
start_server "$tmp/log" --port 0 --root "$root" --workers 2 \
    --header-ms "$header_ms" --idle-ms "$idle_ms"

check "fixed page, keep-alive, pipelined, Connection: close" keepalive
check "HTTP/1.0: closes unless keep-alive" http10
check "HEAD /" head_page
check "GET and HEAD of a file, exact bytes" file_small
check "GET of a 224 KiB file, exact bytes" file_big
check "403 for .." status_keeps $'GET /files/../secret HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 403 Forbidden"
check "403 for %2e%2e" status_keeps $'GET /files/sub/%2e%2E/../secret HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 403 Forbidden"
check "403 for .. in the absolute form" status_keeps $'GET http://t/files/sub/../../secret HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 403 Forbidden"
check "404 for //" status_keeps $'GET /files//etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 404 Not Found"
check "404 for a symbolic link out" status_keeps $'GET /files/link HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 404 Not Found"
check "404 through a linked directory" status_keeps $'GET /files/dirlink/secret HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 404 Not Found"
check "404 for a directory" status_keeps $'GET /files/dir HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 404 Not Found"
check "404 for a missing file" status_keeps $'GET /files/nope HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 404 Not Found"
check "404 for another path" status_keeps $'GET /other HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 404 Not Found"
check "405 for POST" status_keeps $'POST / HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 405 Method Not Allowed"
check "405 for a POST with a body, closed" status_closes $'POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc' "HTTP/1.1 405 Method Not Allowed"
check "501 for an unknown method" status_closes $'BREW / HTTP/1.1\r\nHost: t\r\n\r\n' "HTTP/1.1 501 Not Implemented"
check "413 for a GET with a body" status_closes $'GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello' "HTTP/1.1 413 Content Too Large"
check "400 for a bad request line" status_closes $'GET /\r\nHost: t\r\n\r\n' "HTTP/1.1 400 Bad Request"
check "400 for a field without colon" status_closes $'GET / HTTP/1.1\r\nHost: t\r\nbroken\r\n\r\n' "HTTP/1.1 400 Bad Request"
check "400 for a folded field" status_closes $'GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n' "HTTP/1.1 400 Bad Request"
check "400 for HTTP/1.1 without Host" status_closes $'GET / HTTP/1.1\r\n\r\n' "HTTP/1.1 400 Bad Request"
check "400 for a bad Content-Length" status_closes $'GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n' "HTTP/1.1 400 Bad Request"
check "505 for HTTP/2.0" status_closes $'GET / HTTP/2.0\r\nHost: t\r\n\r\n' "HTTP/1.1 505 HTTP Version Not Supported"
check "garbage gets 400, others still served" garbage_then_served
check "oversize heads get 414 and 431" oversize
check "a stalled client gets 408 and an idle one is closed, others served" stalled

# SIGTERM: a graceful end with status 0, and nothing on standard error
# (where a sanitizer would report).
kill -TERM "$server_pid"
wait "$server_pid"
rc=$?
server_pid=""
exec 8>&-
if [ "$rc" = 0 ] && [ ! -s "$tmp/log.err" ] &&
    grep -qx "received SIGTERM: shutting down" "$tmp/log" &&
    [ "$(tail -n 1 "$tmp/log")" = bye ] &&
    grep -Eqx "served [0-9]+ connections, [0-9]+ requests, [2-9] timed out, [0-9]+ bad" "$tmp/log"; then
    pass "SIGTERM: status 0, bye"
else
    fail "SIGTERM: status $rc"
    sed 's/^/  output: /' "$tmp/log"
    sed 's/^/  stderr: /' "$tmp/log.err"
fi

# A second server with long timeouts (as in real use; a slow emulator
# can take longer than the first one's to answer 1000 connections): wrk,
# then the end of standard input (--eof) while a keep-alive connection is
# idle, which must close that connection at once, not after --idle-ms
# (10 minutes).
start_server "$tmp/log2" --port 0 --root "$root" --workers 2 --idle-ms 600000 --eof
if command -v "$WRK" >/dev/null 2>&1; then
    # wrk and the server need a descriptor per connection.
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] || [ "$hard" -gt 4096 ] && hard=4096
    ulimit -n "$hard" 2>/dev/null
    conns=1000
    if [ "$(ulimit -n)" -lt 1100 ]; then
        conns=$(($(ulimit -n) - 100))
        echo "note: ulimit -n is $(ulimit -n): wrk with $conns connections"
    fi
    check "wrk -c$conns on /" wrk_run "$conns" / 3
    check "wrk -c100 on a file" wrk_run 100 /files/hello.txt 1
    check "still serving after wrk" still_serves
else
    echo "SKIP: wrk not installed: the load checks"
    skipped=$((skipped + 1))
fi

shutdown_idle() {
    conn_open || return 1
    printf '%s' "$get" >&"$cfd"
    recv_n ${#page} "$tmp/e1" && same "$tmp/e1" "$page" || return 1
    exec 8>&- # end of input
    recv_all "$tmp/e2" || { echo "the idle connection stayed open"; return 1; }
    conn_close
    [ ! -s "$tmp/e2" ] || { echo "bytes after the shutdown"; return 1; }
    for _ in $(seq 1 $((T * 10))); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$server_pid"
    rc=$?
    server_pid=""
    [ "$rc" = 0 ] || { echo "status $rc"; return 1; }
    [ ! -s "$tmp/log2.err" ] || { cat "$tmp/log2.err"; return 1; }
    grep -qx "end of input: shutting down" "$tmp/log2" &&
        grep -Eqx "served [0-9]+ connections, [0-9]+ requests, 0 timed out, 0 bad" "$tmp/log2" &&
        [ "$(tail -n 1 "$tmp/log2")" = bye ] || { cat "$tmp/log2"; return 1; }
}
check "end of input: idle keep-alive closed, status 0" shutdown_idle

echo "httpd: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
