/* nng.c - links with libchan::chan-nng: the bridge's calls answer a NULL
 * bridge with -EINVAL.  Prints "cmake nng consumer: ok" on success. */
#include <errno.h>
#include <stdio.h>

#include <chan.h>
#include <chan_nng.h>

int main(void)
{
    if (chan_nng_peers(NULL) != -EINVAL || chan_nng_port(NULL) != -EINVAL)
        return 1;
    printf("cmake nng consumer: ok\n");
    return 0;
}
