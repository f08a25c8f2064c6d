#!/bin/sh
# autogen.sh - generate ./configure and the Makefile.in files from a git
# checkout, with the autotools (autoconf, automake, libtool).  It runs them
# and nothing else: scripts/install-deps.sh installs the packages they and
# the build need.  Then run ./configure && make.
set -e
cd "$(dirname "$0")"
for c in autoreconf libtoolize; do
    command -v "$c" >/dev/null 2>&1 || {
        echo "autogen.sh: '$c' not found: install autoconf, automake and libtool" >&2
        echo "(scripts/install-deps.sh does on Debian and Ubuntu)" >&2
        exit 1
    }
done
autoreconf -fi
