#!/bin/sh
# man.sh - check the man pages in man/man3: that every public function of
# include/chan.h and include/chan_nng.h (each CHAN_EXPORT declaration) has
# a page of its own name, that every such page is either a page that names
# the function in its NAME section or a one-line ".so man3/PAGE.3" link to
# one, that every page in man/man3 is installed (listed in $man_pages, the
# list Makefile.am installs or distributes), and that mandoc -T lint (or,
# without mandoc, man --warnings) finds nothing in the pages themselves.
#
# Run by 'make check' (which exports top_srcdir and man_pages).  Prints one
# PASS or FAIL line per check, SKIP for the lint without mandoc or man, and
# exits 1 if any check failed.

srcdir="${top_srcdir:-.}"
mandir="$srcdir/man/man3"
rc=0
fail() { echo "FAIL: $*"; rc=1; }

funcs=$(sed -n 's/^CHAN_EXPORT[^(]*[ *]\(chan_[a-z0-9_]*\)(.*/\1/p' \
    "$srcdir/include/chan.h" "$srcdir/include/chan_nng.h" | sort -u)
[ -n "$funcs" ] || { echo "FAIL: no CHAN_EXPORT function found in include/"; exit 1; }

# The names a page documents: its .Nm lines before the first .Sh after NAME.
names_of() {
    sed -n '/^\.Sh NAME/,/^\.Sh [^N]/s/^\.Nm \([A-Za-z_0-9]*\).*/\1/p' "$1"
}

n=0
for f in $funcs; do
    page="$mandir/$f.3"
    if [ ! -f "$page" ]; then
        fail "$f has no man page (man/man3/$f.3)"
        continue
    fi
    if grep -q '^\.so ' "$page"; then
        target=$(sed -n 's/^\.so man3\/\([A-Za-z_0-9]*\.3\)$/\1/p' "$page")
        if [ -z "$target" ] || [ "$(wc -l <"$page")" -ne 1 ]; then
            fail "man/man3/$f.3 is not a single '.so man3/PAGE.3' line"
            continue
        fi
        page="$mandir/$target"
        [ -f "$page" ] || { fail "man/man3/$f.3 links to a missing $target"; continue; }
    fi
    if ! names_of "$page" | grep -qx "$f"; then
        fail "$f is not in the NAME section of $(basename "$page")"
        continue
    fi
    n=$((n + 1))
done
[ "$rc" = 0 ] && echo "PASS: each of the $n public functions has a man page that names it"

# Every page of the directory is installed or distributed, and every page
# that is not a link names a function (or is libchan.3, the overview).
pages=""
for p in "$mandir"/*.3; do
    b=$(basename "$p")
    # shellcheck disable=SC2086,SC2116 # squeezes the list's blanks
    case " $(echo ${man_pages:-}) " in
    *" man/man3/$b "*) ;;
    *) [ -n "${man_pages:-}" ] && fail "man/man3/$b is not listed in Makefile.am" ;;
    esac
    grep -q '^\.so ' "$p" || pages="$pages man3/$b"
done
[ "$rc" = 0 ] && echo "PASS: every page in man/man3 is listed in Makefile.am"

# Lint the pages themselves (mandoc calls the .so links fragile, but they
# are what man(1) installations expect; they were checked above).
if command -v mandoc >/dev/null 2>&1; then
    # shellcheck disable=SC2086 # $pages is a list of paths without blanks
    out=$(cd "$srcdir/man" && mandoc -T lint -W warning $pages 2>&1)
    tool="mandoc -T lint"
elif command -v man >/dev/null 2>&1; then
    out=""
    for p in $pages; do
        w=$(cd "$srcdir/man" && LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$p" 2>&1 >/dev/null)
        [ -z "$w" ] || out="$out$p: $w
"
    done
    tool="man --warnings"
else
    echo "SKIP: neither mandoc nor man is installed, the pages were not linted (apt-get install mandoc)"
    exit $rc
fi
if [ -n "$out" ]; then
    fail "$tool:"
    printf '%s\n' "$out" | sed 's/^/  /'
else
    echo "PASS: $tool finds nothing in the $(echo "$pages" | wc -w) pages"
fi
exit $rc
