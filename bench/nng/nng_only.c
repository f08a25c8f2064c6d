/*
 * nng_only.c - nng's own throughput, for bench/nng/run.sh: one pusher
 * thread sends COUNT messages of SIZE bytes (one allocation and one
 * nng_sendmsg each, as a bridge does) over tcp://127.0.0.1 to a puller
 * (nng_recvmsg, nng_msg_free).  Prints "nng SIZE values/s".
 *
 *   nng_only COUNT SIZE
 */
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static long count;
static size_t size;
static nng_socket push;

static void *sender(void *arg)
{
    (void)arg;
    for (long i = 0; i < count; i++) {
        nng_msg *m;
        if (nng_msg_alloc(&m, size) != 0 || nng_sendmsg(push, m, 0) != 0)
            abort();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    count = argc > 1 ? atol(argv[1]) : 1000000;
    size = argc > 2 ? (size_t)atol(argv[2]) : 16;
    nng_socket pull;
    nng_listener l;
    int port;
    char url[64];
    if (nng_push0_open(&push) || nng_pull0_open(&pull) ||
        nng_listen(push, "tcp://127.0.0.1:0", &l, 0) ||
        nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port))
        return 1;
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    if (nng_dial(pull, url, NULL, 0))
        return 1;
    struct timespec t0, t1;
    pthread_t t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_create(&t, NULL, sender, NULL);
    for (long i = 0; i < count; i++) {
        nng_msg *m;
        if (nng_recvmsg(pull, &m, 0) != 0)
            return 1;
        nng_msg_free(m);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    pthread_join(t, NULL);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("nng %zu %.0f\n", size, (double)count / s);
    nng_close(pull);
    nng_close(push);
    return 0;
}
