#!/bin/sh
# install-deps.sh - install the Debian or Ubuntu packages that building and
# testing libchan need, and only those that are missing.
#
#   scripts/install-deps.sh              what ./autogen.sh, ./configure,
#                                        make and make check need
#   scripts/install-deps.sh --optional   also what the optional parts use:
#                                        the event-loop examples (libuv,
#                                        GLib), the nng bridge, wrk (for
#                                        tests/httpd.sh), the man page
#                                        check (mandoc), the CMake and
#                                        pkg-config consumer tests (cmake),
#                                        valgrind
#   scripts/install-deps.sh --ci         also what .ci/run uses: clang, and
#                                        the AArch64 cross compiler and
#                                        qemu-user
#
# When every package is already installed it does nothing and asks for
# nothing.  Otherwise it installs the missing ones with apt-get: directly
# when run as root, through sudo when sudo is there (which may ask for a
# password), and else it prints the apt-get command to run as root and
# fails.  On a system without dpkg it only checks that the autotools are
# on the PATH and lists what else is needed.
set -e

optional=no
ci=no
for arg in "$@"; do
    case $arg in
    --optional) optional=yes ;;
    --ci) optional=yes; ci=yes ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

pkgs="autoconf automake libtool pkg-config make gcc libc6-dev libcriterion-dev"
[ "$optional" = yes ] && pkgs="$pkgs libuv1-dev libglib2.0-dev libnng-dev nng-utils wrk mandoc cmake valgrind"
[ "$ci" = yes ] && pkgs="$pkgs clang qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross"

if ! command -v dpkg-query >/dev/null 2>&1; then
    missing=""
    for c in autoreconf automake libtoolize pkg-config make cc; do
        command -v "$c" >/dev/null 2>&1 || missing="$missing $c"
    done
    if [ -n "$missing" ]; then
        echo "install-deps.sh: not found:$missing" >&2
        echo "Install autoconf, automake, libtool, pkg-config, make, a C compiler and Criterion (for make check)." >&2
        exit 1
    fi
    echo "install-deps.sh: no dpkg here; the autotools are on the PATH (make check also needs Criterion)"
    exit 0
fi

need=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
        need="$need $p"
done
[ -n "$need" ] || exit 0

if [ "$(id -u)" = 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1; then
    sudo="sudo"
else
    echo "install-deps.sh: missing packages:$need" >&2
    echo "Install them as root with:" >&2
    echo "    apt-get update && apt-get install -y$need" >&2
    exit 1
fi
echo "install-deps.sh: installing:$need"
# shellcheck disable=SC2086 # $need is a list of package names
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
# shellcheck disable=SC2086
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
