#!/bin/sh
# valgrind.sh - correct programs pass valgrind's leak check with the
# installed suppressions (libchan.supp): the library's own threads (timer,
# signal relay) are not reported, and nothing else leaks.  Skipped (77)
# without valgrind, and in sanitizer builds, which valgrind cannot run.
builddir="${top_builddir:-.}"
srcdir="${top_srcdir:-.}"
if [ "${chan_sanitized:-no}" = yes ]; then
    echo "SKIP: sanitizer build"
    exit 77
fi
if [ "${cross_compiling:-no}" = yes ]; then
    echo "SKIP: cross build"
    exit 77
fi
if ! command -v valgrind >/dev/null 2>&1; then
    echo "SKIP: valgrind not installed"
    exit 77
fi
rc=0
run() {
    # shellcheck disable=SC2086  # the arguments are split on purpose
    if "$builddir/libtool" --mode=execute timeout 300 valgrind -q \
            --error-exitcode=1 --leak-check=full \
            --errors-for-leak-kinds=definite,possible \
            --suppressions="$srcdir/libchan.supp" \
            "$builddir/examples/$1" $2 >/dev/null 2>"$builddir/tests/valgrind-$1.err"; then
        echo "PASS: valgrind examples/$1 $2"
    else
        echo "FAIL: valgrind examples/$1 $2:"
        sed 's/^/  /' "$builddir/tests/valgrind-$1.err" | head -40
        rc=1
    fi
}
run progress "50 2 5"   # the timer thread
run shutdown "3"        # the signal relay
exit $rc
