#!/bin/sh
# nng_skipped.sh - run by 'make check' instead of tests/nng when configure
# did not find nng (or was given --without-nng): says so, as a skipped test.
echo "SKIP: libchan-nng (the nng bridge) was not built: nng not found or --without-nng"
echo "      install it with:  sudo apt-get install libnng-dev nng-utils; then ./configure"
exit 77
