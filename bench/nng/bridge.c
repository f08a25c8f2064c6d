/*
 * bridge.c - the nng bridge's throughput and latency, for bench/nng/run.sh.
 *
 * Throughput: a producer thread sends COUNT longs on a channel, a push
 * bridge (listening on tcp://127.0.0.1) carries them to a pull bridge,
 * whose channel the main thread drains.  Each value crosses as one nng
 * message of 16 bytes (the 8-byte header and the long), the size
 * nng_only is given.  Prints "bridge 16 values/s".
 *
 * Latency: ROUNDS round trips of one long through two pair bridges (the
 * far end echoes each value back on its own thread).  Prints "latency
 * MICROSECONDS" per round trip, the median of the rounds.
 *
 *   bench_nng_bridge COUNT ROUNDS
 */
#include <chan.h>
#include <chan_nng.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEC ((int64_t)1000000000)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

struct prod { chan_t *ch; long n; };

static void *produce(void *arg)
{
    struct prod *p = arg;
    for (long i = 0; i < p->n; i++)
        if (chan_send(p->ch, &i) != 0)
            abort();
    chan_close(p->ch);
    return NULL;
}

static void *echo(void *arg)
{
    chan_t **c = arg; /* c[0]: from the network, c[1]: back to it */
    long v;
    while (chan_recv(c[0], &v) == 0)
        if (chan_send(c[1], &v) != 0)
            break;
    chan_close(c[1]);
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "bench_nng_bridge: %s: %s\n", what, strerror(-rc));
    return 1;
}

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 1000000;
    long rounds = argc > 2 ? atol(argv[2]) : 10000;
    char url[64];
    int rc;

    /* Throughput: push to pull. */
    chan_t *out = chan_make(sizeof(long), 256), *in = chan_make(sizeof(long), 256);
    chan_nng_t *push, *pull;
    if ((rc = chan_nng_open(&push, CHAN_NNG_PUSH, CHAN_NNG_LISTEN,
                            "tcp://127.0.0.1:0", sizeof(long), out, NULL,
                            NULL)) < 0)
        return fail("push", rc);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", chan_nng_port(push));
    if ((rc = chan_nng_open(&pull, CHAN_NNG_PULL, CHAN_NNG_DIAL, url,
                            sizeof(long), NULL, in, NULL)) < 0)
        return fail("pull", rc);
    if ((rc = chan_nng_wait_peers(push, 1, 10 * SEC)) < 0)
        return fail("connect", rc);
    struct prod p = { out, count };
    pthread_t t;
    double t0 = now();
    pthread_create(&t, NULL, produce, &p);
    long v, got = 0;
    while (chan_recv(in, &v) == 0)
        got++;
    double t1 = now();
    pthread_join(t, NULL);
    if (got != count)
        return fail("lost values", -EIO);
    printf("bridge %zu %.0f\n", (size_t)16, (double)count / (t1 - t0));
    chan_nng_wait(push, 10 * SEC);
    chan_nng_close(push);
    chan_nng_close(pull);
    chan_release(out);
    chan_release(in);

    /* Latency: pair to pair and back. */
    chan_t *a_out = chan_make(sizeof(long), 1), *a_in = chan_make(sizeof(long), 1);
    chan_t *b_out = chan_make(sizeof(long), 1), *b_in = chan_make(sizeof(long), 1);
    chan_nng_t *a, *b;
    if ((rc = chan_nng_open(&a, CHAN_NNG_PAIR, CHAN_NNG_LISTEN,
                            "tcp://127.0.0.1:0", sizeof(long), a_out, a_in,
                            NULL)) < 0)
        return fail("pair", rc);
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", chan_nng_port(a));
    if ((rc = chan_nng_open(&b, CHAN_NNG_PAIR, CHAN_NNG_DIAL, url,
                            sizeof(long), b_out, b_in, NULL)) < 0)
        return fail("pair", rc);
    if ((rc = chan_nng_wait_peers(a, 1, 10 * SEC)) < 0)
        return fail("connect", rc);
    chan_t *ends[2] = { b_in, b_out };
    pthread_create(&t, NULL, echo, ends);
    double *rt = malloc((size_t)rounds * sizeof *rt);
    for (long i = 0; i < rounds; i++) {
        double s = now();
        if (chan_send(a_out, &i) != 0 || chan_recv(a_in, &v) != 0 || v != i)
            return fail("round trip", -EIO);
        rt[i] = now() - s;
    }
    qsort(rt, (size_t)rounds, sizeof *rt, cmp);
    printf("latency %.1f\n", rt[rounds / 2] * 1e6);
    free(rt);
    chan_close(a_out);
    chan_nng_wait(a, 10 * SEC);
    chan_nng_wait(b, 10 * SEC);
    pthread_join(t, NULL);
    chan_nng_close(a);
    chan_nng_close(b);
    chan_release(a_out);
    chan_release(a_in);
    chan_release(b_out);
    chan_release(b_in);
    return 0;
}
