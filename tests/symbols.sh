#!/bin/sh
# symbols.sh - the shared library exports only chan_* names.
lib="${top_builddir:-.}/.libs/libchan.so"
if [ ! -f "$lib" ]; then
    echo "SKIP: no shared library at $lib"
    exit 77
fi
bad=$(nm -D --defined-only "$lib" | awk '{ print $NF }' | grep -v '^chan_' || true)
if [ -n "$bad" ]; then
    echo "FAIL: libchan.so exports names outside chan_*:"
    echo "$bad"
    exit 1
fi
echo "PASS: libchan.so exports only chan_* names ($(nm -D --defined-only "$lib" | wc -l) symbols)"
