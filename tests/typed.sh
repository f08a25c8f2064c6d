#!/bin/sh
# typed.sh - the typed macros of chan.h (CHAN_SEND, CHAN_RECV, ...) compile
# as strict ISO C11 with -pedantic and every warning an error, in their
# GNU C form and in their standard-C form (CHAN_TYPED_LVALUES).
srcdir="${top_srcdir:-.}"
cc="${CC:-cc}"
rc=0
for mode in "" "-DCHAN_TYPED_LVALUES"; do
    # shellcheck disable=SC2086  # mode is empty or one flag
    if $cc -std=c11 -pedantic -Wall -Wextra -Werror $mode -I"$srcdir/include" \
           -fsyntax-only "$srcdir/tests/typed_pedantic.c"; then
        echo "PASS: typed macros compile with -std=c11 -pedantic ${mode:-(GNU C form)}"
    else
        echo "FAIL: typed macros with -std=c11 -pedantic ${mode:-(GNU C form)}"
        rc=1
    fi
done
exit $rc
