#!/bin/sh
# autogen.sh - install what building libchan needs (on Debian or Ubuntu),
# then generate ./configure.
#
#   ./autogen.sh            as root: installs missing packages with apt-get;
#                           otherwise prints the command to run and stops.
#   NOCONFIGURE=1 ./autogen.sh     accepted for compatibility; autogen.sh
#                           never runs configure itself.
#   CHAN_NO_INSTALL=1 ./autogen.sh skip the package check entirely.
set -e
cd "$(dirname "$0")"

need=""
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

if [ -z "${CHAN_NO_INSTALL:-}" ] && have_cmd dpkg-query; then
    for p in autoconf automake libtool pkg-config make gcc libcriterion-dev; do
        have_pkg "$p" || need="$need $p"
    done
    if [ -n "$need" ]; then
        if [ "$(id -u)" = 0 ]; then
            echo "autogen.sh: installing:$need"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            # shellcheck disable=SC2086
            apt-get install -y -qq $need
        else
            echo "autogen.sh: missing packages:$need"
            echo "Install them with:"
            echo "    sudo apt-get install -y$need"
            echo "then run ./autogen.sh again."
            exit 1
        fi
    fi
elif [ -z "${CHAN_NO_INSTALL:-}" ]; then
    for c in autoreconf libtoolize pkg-config; do
        have_cmd "$c" || {
            echo "autogen.sh: '$c' not found: install autoconf, automake, libtool and pkg-config"
            exit 1
        }
    done
fi

mkdir -p m4
autoreconf -fi
echo "autogen.sh: now run ./configure && make"
