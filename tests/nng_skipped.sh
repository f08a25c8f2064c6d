#!/bin/sh
# nng_skipped.sh - run by 'make check' instead of tests/nng when configure
# did not find nng (it is built only with --with-nng): says so, as a skipped test.
echo "SKIP: libchan-nng (the nng bridge) was not built: configure --with-nng to build it"
echo "      install it with:  sudo apt-get install libnng-dev nng-utils; then ./configure"
exit 77
