/*
 * dpipe.c - a pipeline whose stages run as separate processes, joined by
 * libchan-nng bridges: each stage keeps calling chan_recv and chan_send on
 * ordinary channels; only where a channel comes from changes.
 *
 *   dpipe local N              the whole pipeline in one process
 *   dpipe gen N URL [WORKERS]  push 1..N (listens on URL), once WORKERS
 *                              pullers (default 1) are connected
 *   dpipe square IN OUT        pull from IN, push squares to OUT (dials
 *                              both); says on stderr how many it squared
 *   dpipe sum URL [STREAMS]    pull from URL (listens) and print the sum,
 *                              after STREAMS ends of stream (default 1)
 *
 * For example, in three shells (in any order):
 *
 *   dpipe sum tcp://127.0.0.1:5556
 *   dpipe square tcp://127.0.0.1:5555 tcp://127.0.0.1:5556
 *   dpipe gen 1000 tcp://127.0.0.1:5555
 *
 * prints "sum=333833500", as "dpipe local 1000" does.  The end of the
 * generator's stream (it closes its channel) reaches the squarer, whose
 * closing reaches the summer.
 *
 * A work queue: start K squarers and the generator's values are spread
 * over them (push gives each value to one puller).  Tell the generator to
 * wait for the K workers (dpipe gen N URL K), so that none starts late and
 * gets nothing, and the summer to wait for the end of each worker's stream
 * (dpipe sum URL K):
 *
 *   dpipe sum tcp://127.0.0.1:5556 3 &
 *   for i in 1 2 3; do
 *       dpipe square tcp://127.0.0.1:5555 tcp://127.0.0.1:5556 &
 *   done
 *   dpipe gen 1000 tcp://127.0.0.1:5555 3
 *
 * Every worker gets an end of stream once the generator's values are all
 * handed out, and the summer prints the same sum.
 */
#include <chan.h>
#include <chan_nng.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SEC ((int64_t)1000000000)

static int usage(void)
{
    fprintf(stderr, "usage: dpipe local N | gen N URL [WORKERS] | "
                    "square IN OUT | sum URL [STREAMS]\n");
    return 2;
}

static int fail(const char *what, int rc)
{
    fprintf(stderr, "dpipe: %s: %s\n", what, strerror(-rc));
    return 1;
}

/* The three stages, on channels: the same code in every mode. */
static int gen(chan_t *out, long n)
{
    for (long i = 1; i <= n; i++)
        if (chan_send(out, &i) != 0)
            return -1;
    chan_close(out);
    return 0;
}

static long square(chan_t *in, chan_t *out)
{
    long v, n = 0;
    while (chan_recv(in, &v) == 0) {
        v *= v;
        if (chan_send(out, &v) != 0)
            break;
        n++;
    }
    chan_close(out);
    return n;
}

static long sum(chan_t *in)
{
    long v, s = 0;
    while (chan_recv(in, &v) == 0)
        s += v;
    return s;
}

struct sq { chan_t *in, *out; };
struct gn { chan_t *out; long n; };

static void run_square(void *arg)
{
    struct sq *a = arg;
    square(a->in, a->out);
}

static void run_gen(void *arg)
{
    struct gn *a = arg;
    gen(a->out, a->n);
}

static int local(long n)
{
    chan_t *a = chan_make(sizeof(long), 16), *b = chan_make(sizeof(long), 16);
    chan_sched_t *s = chan_sched_new(NULL);
    if (!a || !b || !s)
        return fail("setup", -12);
    struct gn g = { a, n };
    struct sq q = { a, b };
    chan_go(s, run_gen, &g);
    chan_go(s, run_square, &q);
    printf("sum=%ld\n", sum(b));
    chan_sched_free(s);
    chan_release(a);
    chan_release(b);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    const char *stage = argv[1];
    chan_nng_t *b1, *b2;
    int rc;
    if (strcmp(stage, "local") == 0) {
        long n = strtol(argv[2], NULL, 10);
        return n < 0 ? usage() : local(n);
    }
    if (strcmp(stage, "gen") == 0 && (argc == 4 || argc == 5)) {
        long n = strtol(argv[2], NULL, 10);
        long workers = argc == 5 ? strtol(argv[4], NULL, 10) : 1;
        if (n < 0 || workers < 1 || workers > 1000)
            return usage();
        chan_t *out = chan_make(sizeof(long), 64);
        rc = chan_nng_open(&b1, CHAN_NNG_PUSH, CHAN_NNG_LISTEN, argv[3],
                           sizeof(long), out, NULL, NULL);
        if (rc < 0)
            return fail(argv[3], rc);
        rc = chan_nng_wait_peers(b1, (unsigned)workers, 60 * SEC);
        if (rc < 0) {
            chan_nng_close(b1);
            chan_release(out);
            return fail("gen: waiting for the workers", rc);
        }
        gen(out, n);
        rc = chan_nng_wait(b1, 60 * SEC); /* every puller saw the end */
        chan_nng_close(b1);
        chan_release(out);
        return rc < 0 ? fail("gen", rc) : 0;
    }
    if (strcmp(stage, "square") == 0 && argc == 4) {
        chan_t *in = chan_make(sizeof(long), 64);
        chan_t *out = chan_make(sizeof(long), 64);
        rc = chan_nng_open(&b1, CHAN_NNG_PULL, CHAN_NNG_DIAL, argv[2],
                           sizeof(long), NULL, in, NULL);
        if (rc < 0)
            return fail(argv[2], rc);
        rc = chan_nng_open(&b2, CHAN_NNG_PUSH, CHAN_NNG_DIAL, argv[3],
                           sizeof(long), out, NULL, NULL);
        if (rc < 0)
            return fail(argv[3], rc);
        long done = square(in, out);
        fprintf(stderr, "square: %ld values\n", done);
        int r1 = chan_nng_wait(b1, 0);
        int r2 = chan_nng_wait(b2, 60 * SEC);
        chan_nng_close(b2);
        chan_nng_close(b1);
        chan_release(in);
        chan_release(out);
        if (r1 < 0)
            return fail("square: input", r1);
        return r2 < 0 ? fail("square: output", r2) : 0;
    }
    if (strcmp(stage, "sum") == 0 && (argc == 3 || argc == 4)) {
        chan_t *in = chan_make(sizeof(long), 64);
        chan_nng_opts_t o = { .streams = argc == 4 ? (unsigned)atoi(argv[3]) : 1 };
        rc = chan_nng_open2(&b1, CHAN_NNG_PULL, CHAN_NNG_LISTEN, argv[2],
                            sizeof(long), NULL, in, &o);
        if (rc < 0)
            return fail(argv[2], rc);
        long s = sum(in);
        rc = chan_nng_wait(b1, 0);
        chan_nng_close(b1);
        chan_release(in);
        if (rc < 0)
            return fail("sum", rc);
        printf("sum=%ld\n", s);
        return 0;
    }
    return usage();
}
