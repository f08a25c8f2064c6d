#!/bin/sh
# examples.sh - run the programs in examples/ with small arguments and check
# what they print, not only how they exit.
#
# Run by 'make check' (which exports top_builddir), or by hand from the
# build directory:  sh tests/examples.sh
#
# To add an example, append one line to the list at the end:
#
#   check NAME "ARGS" exact "TEXT"     the whole output must be TEXT
#                                      (printf %b: "\n" separates lines)
#   check NAME "ARGS" lines "RE" ...   each extended regex RE must match a
#                                      whole line of the output
#   check NAME "ARGS" status N         the exit status must be N (bad input)
#   check NAME "ARGS" call FUNC        FUNC "$out" must succeed (see below)
#
# An example that needs an optional library goes through "optional VAR"
# (optional have_libuv check NAME ...): it is skipped when configure set
# $VAR to "no", or when $VAR is unset (a run by hand) and it was not built.
#
# Every mode but status also requires exit status 0.  Each run is limited
# to $EXAMPLE_TIMEOUT seconds (default 60, generous for sanitizer builds).
# $EXAMPLE_RUNNER, if set, is put before each program (an emulator such as
# qemu-aarch64 for a cross build, or valgrind).
# The script prints one PASS or FAIL line per check and exits 1 if any
# check failed.

builddir="${top_builddir:-.}"
timeout_s="${EXAMPLE_TIMEOUT:-60}"
runner="${EXAMPLE_RUNNER:-}"
failed=0
passed=0

if command -v timeout >/dev/null 2>&1; then
    # -k: a program that handles SIGTERM (echo_tasks) and still hangs
    limit="timeout -k 10 $timeout_s"
else
    limit=""
fi

# The first N primes, computed independently of the example.
first_primes() {
    awk -v n="$1" 'BEGIN {
        for (c = 2; k < n; c++) {
            p = 1
            for (d = 2; d * d <= c; d++) if (c % d == 0) { p = 0; break }
            if (p) { s = s (k ? " " : "") c; k++ }
        }
        print s
    }'
}

# heartbeat BEATS 10 STALL: beats 1..BEATS in order, a missed heartbeat
# reported right after beat STALL, and the final line.  A machine under
# heavy load may report other late beats as missed too; that is allowed.
heartbeat_ok() {
    out="$1" beats="$2" stall="$3"
    got=$(printf '%s\n' "$out" | sed -n 's/^beat \([0-9]*\)$/\1/p' | tr '\n' ' ')
    want=$(seq 1 "$beats" | tr '\n' ' ')
    [ "$got" = "$want" ] || { echo "beats: got '$got', want '$want'"; return 1; }
    printf '%s\n' "$out" | grep -A1 -x "beat $stall" |
        grep -qx "missed heartbeat after beat $stall" ||
        { echo "no missed heartbeat reported after beat $stall"; return 1; }
    sum=$((beats * (beats + 1) / 2))
    last=$(printf '%s\n' "$out" | tail -n 1)
    [ "$last" = "worker finished: beats=$beats result=$sum" ] ||
        { echo "last line: '$last'"; return 1; }
}

# A full workers run: exact count and sum of squares.
workers_ok() {
    out="$1" w="$2" n="$3"
    sum=$((n * (n + 1) * (2 * n + 1) / 6))
    [ "$out" = "workers=$w jobs=$n results=$n sum=$sum ok" ] ||
        { echo "want: workers=$w jobs=$n results=$n sum=$sum ok"; return 1; }
}

# dpipe_procs N WORKERS: the pipeline of examples/dpipe.c as separate
# processes over tcp://127.0.0.1: a generator, WORKERS squarers sharing its
# values (a work queue: the generator waits for all of them), a summer
# waiting for every squarer's end of stream.  The sum must be what the
# single-process pipeline prints, and the squarers' shares must add up to
# N, each of them non-empty.  The stages start in any order (dialers
# retry).  The ports come from this shell's pid and the attempt, below
# Linux's ephemeral range (32768 up) so that no client socket of another
# test holds them; a run whose listener still finds its port taken is
# tried again on other ports, up to 5 times.
dpipe_procs() {
    a=0
    while :; do
        msg=$(dpipe_procs_on "$1" "$2" "$a") && return 0
        case $msg in
        *"Address already in use"*) [ "$a" -lt 4 ] && { a=$((a + 1)); continue; } ;;
        esac
        echo "$msg"
        return 1
    done
}

# dpipe_procs_on N WORKERS ATTEMPT: one run of dpipe_procs.
dpipe_procs_on() {
    n="$1" w="$2"
    prog="$builddir/examples/dpipe"
    [ -x "$prog" ] || { echo "SKIP: dpipe not built (no nng)"; return 0; }
    p1=$((10000 + ($$ * 2 + $3 * 4099 * 2) % 20000)) p2=$((p1 + 1))
    u1="tcp://127.0.0.1:$p1" u2="tcp://127.0.0.1:$p2"
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/dpipe.XXXXXX") || return 1
    $limit $runner "$prog" sum "$u2" "$w" >"$tmp/sum" 2>&1 &
    spid=$!
    pids=""
    i=0
    while [ "$i" -lt "$w" ]; do
        $limit $runner "$prog" square "$u1" "$u2" 2>"$tmp/sq$i" &
        pids="$pids $!"
        i=$((i + 1))
    done
    $limit $runner "$prog" gen "$n" "$u1" "$w" 2>"$tmp/gen"
    grc=$?
    # A generator that failed (its port taken) leaves the stages waiting.
    # shellcheck disable=SC2086
    [ "$grc" = 0 ] || kill $pids "$spid" 2>/dev/null
    rc=0
    for p in $pids; do wait "$p" || rc=$?; done
    wait "$spid" || rc=$?
    got=$(cat "$tmp/sum")
    shares=$(cat "$tmp"/sq* | sed -n 's/^square: \([0-9]*\) values$/\1/p' | tr '\n' ' ')
    errs=$(cat "$tmp/gen" "$tmp"/sq* | grep -v '^square: [0-9]* values$')
    rm -rf "$tmp"
    want=$("$prog" local "$n")
    total=0 empty=0 k=0
    for c in $shares; do
        total=$((total + c)) k=$((k + 1))
        [ "$c" -gt 0 ] || empty=1
    done
    [ "$grc" = 0 ] && [ "$rc" = 0 ] && [ "$got" = "$want" ] &&
        [ "$k" = "$w" ] && [ "$total" = "$n" ] && [ "$empty" = 0 ] ||
        { echo "gen=$grc stages=$rc got '$got', want '$want', shares '$shares' $errs"; return 1; }
}

# check NAME "ARGS" MODE EXPECTED... (see the top of this file)
check() {
    name="$1" args="$2" mode="$3"
    shift 3
    prog="$builddir/examples/$name"
    label="$name${args:+ $args}"
    if [ ! -x "$prog" ]; then
        echo "FAIL: $label: $prog not built"
        failed=$((failed + 1))
        return
    fi
    # shellcheck disable=SC2086  # ARGS is split on purpose
    out=$($limit $runner "$prog" $args 2>"$tmp_err")
    rc=$?
    why=""
    case "$mode" in
    status)
        [ "$rc" = "$1" ] || why="exit status $rc, want $1"
        ;;
    *)
        if [ "$rc" != 0 ]; then
            why="exit status $rc"
            [ "$rc" = 124 ] && why="timed out after ${timeout_s}s"
        else
            case "$mode" in
            exact)
                want=$(printf '%b' "$1")
                [ "$out" = "$want" ] || why="output differs; want:
$want"
                ;;
            lines)
                for re in "$@"; do
                    printf '%s\n' "$out" | grep -Eqx -- "$re" ||
                        { why="no line matches: $re"; break; }
                done
                ;;
            call)
                fn="$1"
                shift
                msg=$("$fn" "$out" "$@") || why="${msg:-$fn failed}"
                ;;
            *)
                why="unknown check mode '$mode' in tests/examples.sh"
                ;;
            esac
        fi
        ;;
    esac
    if [ -z "$why" ]; then
        echo "PASS: $label"
        passed=$((passed + 1))
    else
        echo "FAIL: $label: $why"
        [ -n "$out" ] && printf '%s\n' "$out" | sed -n '1,20s/^/  output: /p'
        sed -n '1,20s/^/  stderr: /p' "$tmp_err"
        failed=$((failed + 1))
    fi
}

skipped=0

# optional VAR check ARGS...: the check, unless the example was skipped.
optional() {
    var="$1"
    shift
    eval "have=\${$var-}"
    if [ "$have" = no ] || { [ -z "$have" ] && [ ! -x "$builddir/examples/$2" ]; }; then
        echo "SKIP: $2${3:+ $3}: not built (configure found no library for it)"
        skipped=$((skipped + 1))
        return
    fi
    "$@"
}

tmp_err=$(mktemp "${TMPDIR:-/tmp}/examples.XXXXXX") || exit 1
trap 'rm -f "$tmp_err"' EXIT

# ---------------------------------------------------------------- the list
check primes    "10"          exact "2 3 5 7 11 13 17 19 23 29"
check primes    "1"           exact "2"
check primes    "100"         exact "$(first_primes 100)"
check primes    "0"           status 2
check workers   "4 1000"      call workers_ok 4 1000
check workers   "1 1"         call workers_ok 1 1
check workers   "16 20000"    call workers_ok 16 20000
check workers   "3 100000 10" exact "workers=3 jobs=100000 results=10 stopped"
check workers   "2 50 50"     exact "workers=2 jobs=50 results=50 stopped"
check workers   "0"           status 2
check heartbeat "6 10 3"      call heartbeat_ok 6 3
check heartbeat "4 5 4"       call heartbeat_ok 4 4
check heartbeat "3 5 0"       lines "beat 3" "worker finished: beats=3 result=6"
check heartbeat "1 1 2"       status 2
# ---- timers, signals, wait groups (progress, shutdown, fanout)

# Collatz steps of 1..N, summed, computed independently of the example.
collatz_sum() {
    awk -v n="$1" 'BEGIN {
        for (i = 1; i <= n; i++) { m = i; while (m != 1) { m = m % 2 ? 3 * m + 1 : m / 2; s++ } }
        print s + 0
    }'
}

# The number of primes up to N.
count_primes() {
    awk -v n="$1" 'BEGIN {
        for (c = 2; c <= n; c++) {
            p = 1
            for (d = 2; d * d <= c; d++) if (c % d == 0) { p = 0; break }
            k += p
        }
        print k + 0
    }'
}

fanout_ok() {
    out="$1" w="$2" n="$3"
    want="fanout: workers=$w items=$n steps=$(collatz_sum "$n")"
    [ "$out" = "$want" ] || { echo "want: $want"; return 1; }
}

# progress ITEMS ...: at least one progress line, counts never decreasing
# and never above ITEMS, then the summary with the right number of primes.
progress_ok() {
    out="$1" n="$2"
    last=$(printf '%s\n' "$out" | tail -n 1)
    want="done: $n items, $(count_primes "$n") primes"
    [ "$last" = "$want" ] || { echo "last line '$last', want '$want'"; return 1; }
    printf '%s\n' "$out" | sed '$d' | awk -v n="$n" '
        $0 !~ "^progress: [0-9]+/" n "$" { print "bad line: " $0; exit 1 }
        { split($2, a, "/"); if (a[1] + 0 < prev || a[1] + 0 > n) { print "bad count: " $0; exit 1 }
          prev = a[1] + 0; seen++ }
        END { if (!seen) { print "no progress line"; exit 1 } }'
}

# shutdown N SIG: serving, the signal seen, at least N requests handled,
# every accepted request handled or drained (handled + drained == last),
# bye; nothing else but idle notices (a slow sanitizer build may see some).
shutdown_ok() {
    out="$1" sig="$2" n="$3"
    printf '%s\n' "$out" | awk -v sig="SIG$sig" -v n="$n" '
        NR == 1 { if ($0 != "serving") { print "first line: " $0; bad = 1; exit 1 } next }
        $0 == "idle for 500 ms" { next }
        $0 == "received " sig ": shutting down" { got++; next }
        /^handled [0-9]+ requests \(last [0-9]+\), drained [0-9]+$/ {
            h = $2 + 0; l = $5 + 0; d = $7 + 0  # $5 is "L),"
            if (h < n || h + d != l) { print "bad counts: " $0; bad = 1; exit 1 }
            got++; next }
        $0 == "bye" { got++; bye = NR; next }
        { print "unexpected line: " $0; bad = 1; exit 1 }
        END { if (!bad && (got != 3 || bye != NR)) { print "missing lines"; exit 1 } }'
}

check fanout    "4 10000"     call fanout_ok 4 10000
check fanout    "1 1"         exact "fanout: workers=1 items=1 steps=0"
check fanout    "16 3000"     call fanout_ok 16 3000
check fanout    "3 0"         exact "fanout: workers=3 items=0 steps=0"
check fanout    "0"           status 2
check progress  "200 4 10"    call progress_ok 200
check progress  "100 1 2"     call progress_ok 100
check progress  "0 2 5"       lines "done: 0 items, 0 primes"
check progress  "10 0"        status 2
check shutdown  "5"           call shutdown_ok TERM 5
check shutdown  "3 INT"       call shutdown_ok INT 3
check shutdown  "40 TERM"     call shutdown_ok TERM 40
check shutdown  "1 HUP"       status 2
check primes_tasks  "10"        exact "2 3 5 7 11 13 17 19 23 29"
check primes_tasks  "1 1"       exact "2"
check primes_tasks  "200 2"     exact "$(first_primes 200)"
check primes_tasks  "0"         status 2
check workers_tasks "8 1000"    call workers_ok 8 1000
check workers_tasks "1 1 1"     call workers_ok 1 1
check workers_tasks "100 5000 2" call workers_ok 100 5000
check workers_tasks "0"         status 2
check fanout_tasks  "1"         exact "tasks=1 sum=1 ok"
check fanout_tasks  "20000"     exact "tasks=20000 sum=2666866670000 ok"
check fanout_tasks  "5000 1"    exact "tasks=5000 sum=41679167500 ok"
check fanout_tasks  "x"         status 2
# ---- event loops through chan_pollfd (libuv, GLib)

# NAME P N: the loop's one line, with count P*N and the sum of 1..P*N.
loop_ok() {
    out="$1" name="$2" p="$3" n="$4"
    t=$((p * n))
    want="$name: producers=$p items=$n count=$t sum=$((t * (t + 1) / 2)) ok"
    [ "$out" = "$want" ] || { echo "want: $want"; return 1; }
}

optional have_libuv check uv_consumer   "4 1000"     call loop_ok uv_consumer 4 1000
optional have_libuv check uv_consumer   "3 500 0"    call loop_ok uv_consumer 3 500
optional have_libuv check uv_consumer   "8 300 1"    call loop_ok uv_consumer 8 300
optional have_libuv check uv_consumer   "2 0"        call loop_ok uv_consumer 2 0
optional have_libuv check uv_consumer   "0"          status 2
optional have_glib  check glib_consumer "4 1000"     call loop_ok glib_consumer 4 1000
optional have_glib  check glib_consumer "3 500 64"   call loop_ok glib_consumer 3 500
optional have_glib  check glib_consumer "8 300 1"    call loop_ok glib_consumer 8 300
optional have_glib  check glib_consumer "1 0"        call loop_ok glib_consumer 1 0
optional have_glib  check glib_consumer "x"          status 2
# ---- I/O (echo_tasks, fetch_threads)

# Bytes the echo_tasks self-test clients send (and get back): client i
# sends three messages of 1 + (i * 997 + m * 631) % 3000 bytes.
echo_bytes() {
    awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) for (m = 0; m < 3; m++) s += 1 + (i * 997 + m * 631) % 3000; print s }'
}

# echo_tasks --self-test N: every client echoed, the idle one closed, the
# signal seen, exact counts, bye.
echo_ok() {
    out="$1" n="$2"
    want="port [0-9]+
clients: $n of $n echoed exactly; idle client closed by the server
received SIGTERM: shutting down
served $((n + 1)) connections, echoed $(echo_bytes "$n") bytes, closed 1 idle
bye"
    printf '%s\n' "$out" | awk -v want="$want" '
        { got = got (NR > 1 ? "\n" : "") $0 }
        END { n = split(want, w, "\n"); split(got, g, "\n")
              for (i = 1; i <= n; i++) if (g[i] !~ ("^" w[i] "$")) { print "line " i ": " g[i]; exit 1 }
              if (NR != n) { print NR " lines, want " n; exit 1 } }'
}

check echo_tasks    "--self-test 4 --idle-ms 100" call echo_ok 4
check echo_tasks    "--self-test 1 --idle-ms 50"  call echo_ok 1
check echo_tasks    "--idle-ms"                   status 2
check echo_tasks    "--client 0 1"                status 2
check fetch_threads "4"  exact "fetch 1: 1000 bytes ok\nfetch 2: 2000 bytes ok\nfetch 3: 3000 bytes ok\nfetch 4: 4000 bytes ok\nslow, 50 ms timeout: timed out\nslow, no timeout: cancelled by quit\ndone: 4 of 4 fetched"
check fetch_threads "1"  exact "fetch 1: 1000 bytes ok\nslow, 50 ms timeout: timed out\nslow, no timeout: cancelled by quit\ndone: 1 of 1 fetched"
check fetch_threads "0"  status 2

# echo_tasks as a real server: a client run of the same program, then
# SIGTERM from outside (how=TERM) or the end of its standard input
# (how=EOF, the protocol of bench/echo/).  Its stdin is a FIFO that this
# shell holds open until then.
echo_server_check() {
    how="$1"
    label="echo_tasks server, --client, then $how"
    prog="$builddir/examples/echo_tasks"
    log=$(mktemp "${TMPDIR:-/tmp}/echo.XXXXXX") || return
    fifo="$log.in"
    mkfifo "$fifo" || return
    # shellcheck disable=SC2086
    $limit $runner "$prog" --port 0 --idle-ms 2000 <"$fifo" >"$log" 2>"$tmp_err" &
    pid=$!
    exec 9>"$fifo"
    port=""
    i=0
    while [ -z "$port" ] && [ "$i" -lt $((timeout_s * 10)) ]; do
        port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$log")
        [ -n "$port" ] || sleep 0.1
        i=$((i + 1))
    done
    why=""
    if [ -z "$port" ]; then
        why="the server never said where it listens"
    else
        # shellcheck disable=SC2086
        cout=$($limit $runner "$prog" --client "$port" 3 2>&1) ||
            why="client failed: $cout"
    fi
    if [ "$how" = TERM ]; then
        kill -TERM "$pid" 2>/dev/null
        want="received SIGTERM: shutting down"
        wait "$pid"
        rc=$?
        exec 9>&-
    else
        want="end of input: shutting down"
        exec 9>&-
        wait "$pid"
        rc=$?
    fi
    [ -z "$why" ] && [ "$rc" != 0 ] && why="server exit status $rc"
    [ -z "$why" ] && ! grep -qx "$want" "$log" && why="no line: $want"
    [ -z "$why" ] && [ "$(tail -n 1 "$log")" != "bye" ] && why="no bye"
    [ -z "$why" ] && ! grep -Eqx "served 3 connections, echoed $(echo_bytes 3) bytes, closed 0 idle" "$log" &&
        why="counts differ"
    if [ -z "$why" ]; then
        echo "PASS: $label"
        passed=$((passed + 1))
    else
        echo "FAIL: $label: $why"
        sed -n '1,20s/^/  output: /p' "$log"
        sed -n '1,20s/^/  stderr: /p' "$tmp_err"
        failed=$((failed + 1))
    fi
    rm -f "$log" "$fifo"
}
echo_server_check TERM
echo_server_check EOF
# httpd_tasks: its arguments here; the server itself in tests/httpd.sh.
check httpd_tasks   "--help"        lines "usage: httpd_tasks \\[--port P\\] .*" "GET / is a fixed page.*"
check httpd_tasks   "--workers 0"   status 2
check httpd_tasks   "--port x"      status 2
check httpd_tasks   "--port 70000"  status 2
check httpd_tasks   "--idle-ms 0"   status 2
check httpd_tasks   "--header-ms"   status 2
check httpd_tasks   "--frob 1"      status 2
check httpd_tasks   "--root /nonexistent/dir" status 2
if [ -x "$builddir/examples/dpipe" ]; then
    check dpipe     "local 1000"  exact "sum=333833500"
    check dpipe     "local 0"     exact "sum=0"
    check dpipe     "frob"        status 2
    check dpipe     "gen 10"      status 2
    # One binary run as separate processes: the three-stage pipeline, then
    # a work queue of several squarer processes.
    for spec in "1000 1" "5000 1" "1000 3" "5000 4"; do
        # shellcheck disable=SC2086
        if msg=$(dpipe_procs $spec); then
            echo "PASS: dpipe over processes ($spec)"; passed=$((passed + 1))
        else
            echo "FAIL: dpipe over processes ($spec): $msg"; failed=$((failed + 1))
        fi
    done
fi

# ---- chat: examples/chat as a real server, driven by tests/chat_client
# (built by 'make check'; see its top comment for what it checks).  The
# client sends the signal itself, while its connections are still open;
# the server's summary must be the one the client counted.
chat_check() {
    mode="$1" sig="$2" opts="$3"
    label="chat server, chat_client $mode, $sig"
    prog="$builddir/examples/chat"
    client="$builddir/tests/chat_client"
    if [ ! -x "$client" ]; then
        echo "SKIP: $label: tests/chat_client not built (make check builds it)"
        skipped=$((skipped + 1))
        return
    fi
    log=$(mktemp "${TMPDIR:-/tmp}/chat.XXXXXX") || return
    # A small send buffer, so that a client that never reads fills up soon.
    # shellcheck disable=SC2086  # OPTS is split on purpose
    $limit $runner "$prog" --port 0 --sndbuf 4096 $opts >"$log" 2>"$tmp_err" &
    pid=$!
    port=""
    i=0
    while [ -z "$port" ] && [ "$i" -lt $((timeout_s * 10)) ]; do
        port=$(sed -n 's/^port \([0-9]*\)$/\1/p' "$log")
        [ -n "$port" ] || sleep 0.1
        i=$((i + 1))
    done
    why=""
    cout=""
    if [ -z "$port" ]; then
        why="the server never said where it listens"
    elif ! cout=$($limit $runner "$client" "$port" "$pid" "$mode" 2>&1); then
        why="client failed"
    fi
    [ -n "$why" ] && kill -TERM "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    want=$(printf '%s\n' "$cout" | sed -n 's/^want: //p')
    [ -z "$why" ] && [ "$rc" != 0 ] && why="server exit status $rc"
    [ -z "$why" ] && ! grep -qx "received $sig: shutting down" "$log" &&
        why="no line: received $sig: shutting down"
    [ -z "$why" ] && [ -z "$want" ] && why="the client printed no summary"
    [ -z "$why" ] && ! grep -qxF "$want" "$log" && why="no line: $want"
    [ -z "$why" ] && [ "$(tail -n 1 "$log")" != "bye" ] && why="no bye"
    [ -z "$why" ] && [ -s "$tmp_err" ] && why="the server wrote to stderr"
    if [ -z "$why" ]; then
        echo "PASS: $label"
        passed=$((passed + 1))
    else
        echo "FAIL: $label: $why"
        printf '%s\n' "$cout" | sed -n '1,20s/^/  client: /p'
        sed -n '1,20s/^/  output: /p' "$log"
        sed -n '1,20s/^/  stderr: /p' "$tmp_err"
        failed=$((failed + 1))
    fi
    rm -f "$log"
}
# all: a write timeout beyond the test's, so that only the full queue can
# drop the slow client; stuck: a queue far longer than the test fills, so
# that only the write timeout can.
chat_check all SIGTERM "--write-timeout-ms 600000"
chat_check int SIGINT ""
chat_check stuck SIGTERM "--queue 4096 --write-timeout-ms 300"
check chat "--queue 0"      status 2
check chat "--queue 1"      status 2
check chat "--port"         status 2
check chat "--sndbuf -1"    status 2
check chat "--frob 1"       status 2

echo "examples: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
