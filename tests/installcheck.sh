#!/bin/sh
# installcheck.sh - build and run the two tiny consumer projects against an
# installed libchan: tests/cmake (find_package(libchan), the imported
# target libchan::chan, and libchan::chan-nng when the bridge was built)
# and tests/pkgconfig (pkg_check_modules(... libchan)).
#
# Run by 'make installcheck' after 'make install' (and so by 'make
# distcheck'), with the same DESTDIR if the install used one.  From the
# environment: srcdir, prefix, libdir, DESTDIR, CC, CMAKE (empty: skip),
# have_nng (yes: expect libchan::chan-nng), work (a scratch directory,
# removed afterwards).  Prints one PASS or FAIL line per project; exits 1
# if any failed.  Without cmake it says so and exits 0.

: "${prefix:?}" "${libdir:?}"
srcdir=${srcdir:-.}
work=${work:-installcheck.tmp}
root="${DESTDIR:-}"
if [ -z "${CMAKE:-}" ] || ! command -v "$CMAKE" >/dev/null 2>&1; then
    echo "SKIP: the CMake and pkg-config consumer tests need cmake (apt-get install cmake)"
    exit 0
fi
if ! command -v pkg-config >/dev/null 2>&1; then
    echo "SKIP: the consumer tests need pkg-config"
    exit 0
fi

# A staged installation (DESTDIR) is not where its libraries say their
# dependencies are: libchan-nng.so's run path names $libdir, not the
# staging root, and the dynamic linker follows it to find libchan.so.
if [ -n "$root" ]; then
    LD_LIBRARY_PATH="$root$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export LD_LIBRARY_PATH
fi

rm -rf "$work"
mkdir -p "$work" || exit 1
rc=0
nng=OFF
[ "${have_nng:-no}" = yes ] && nng=ON

# project NAME DIR EXPECTED-OUTPUT-LINE CMAKE-ARGS...
project() {
    name=$1 dir=$2 want=$3
    shift 3
    b="$work/$name"
    if ! "$CMAKE" -S "$srcdir/tests/$dir" -B "$b" -DCMAKE_C_COMPILER="${CC:-cc}" \
            "$@" >"$b.log" 2>&1 ||
        ! "$CMAKE" --build "$b" >>"$b.log" 2>&1; then
        echo "FAIL: $name: the project did not configure or build; its log:"
        sed 's/^/  /' "$b.log"
        rc=1
        return
    fi
    for prog in "$b"/consumer "$b"/consumer_nng; do
        [ -x "$prog" ] || continue
        out=$("$prog" 2>&1)
        st=$?
        case $prog in */consumer_nng) w="cmake nng consumer: ok" ;; *) w=$want ;; esac
        if [ "$st" != 0 ] || [ "$out" != "$w" ]; then
            echo "FAIL: $name: $(basename "$prog") exited $st, printed '$out', not '$w'"
            rc=1
            return
        fi
    done
    echo "PASS: $name"
}

project "find_package(libchan)" cmake "cmake consumer: 6" \
    -DCMAKE_PREFIX_PATH="$root$prefix" -DLIBCHAN_EXPECT_NNG="$nng"
# pkg-config's file names the prefix as configured; with DESTDIR it is
# found under the staging root, which PKG_CONFIG_SYSROOT_DIR puts in front.
PKG_CONFIG_PATH="$root$libdir/pkgconfig"
PKG_CONFIG_SYSROOT_DIR="$root"
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR
project "pkg_check_modules(libchan)" pkgconfig "pkg-config consumer: 6"

[ "$rc" = 0 ] && rm -rf "$work"
exit $rc
