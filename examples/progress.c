/*
 * progress.c - a progress reporter driven by a ticker, over a pipeline of
 * worker threads.
 *
 *   usage: progress [ITEMS [WORKERS [PERIOD_MS]]]
 *          (defaults: 200 items, 4 workers, a report every 10 ms)
 *
 * What it shows:
 *  - chan_tick as a clock in a select loop: main waits on the results
 *    channel and the ticker at once and prints a progress line on every
 *    tick, like Go's "case <-ticker.C:";
 *  - a slow receiver loses ticks instead of piling them up: while main is
 *    busy, the ticker keeps at most one tick waiting;
 *  - a pipeline: a feeder thread sends item numbers, WORKERS threads test
 *    each for primality (sleeping 1 ms per item to stand for real work),
 *    and the last worker out closes the results channel, which ends the
 *    loop;
 *  - chan_timer_stop and chan_release to stop the ticker at the end.
 *
 * Output: some progress lines (how many depends on the machine), then one
 * summary line, for example with the defaults:
 *
 *   progress: 38/200
 *   progress: 77/200
 *   ...
 *   done: 200 items, 46 primes
 *
 * Progress counts never decrease and never exceed ITEMS.  Any failure prints
 * a message and exits with status 1; bad arguments exit with status 2.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <chan.h>

#define MAX_WORKERS 64
#define MAX_ITEMS 1000000L

static void die(const char *what, int err)
{
    fprintf(stderr, "progress: %s: %s\n", what, strerror(err));
    exit(1);
}

/* What a worker sends on: values are copied, a small struct is fine. */
struct result {
    long item;
    int prime;
};

struct pipeline {
    chan_t *items;      /* long; closed by the feeder */
    chan_t *results;    /* struct result; closed by the last worker out */
    long nitems;
    atomic_long running; /* workers still running */
};

static int is_prime(long n)
{
    if (n < 2)
        return 0;
    for (long d = 2; d * d <= n; d++)
        if (n % d == 0)
            return 0;
    return 1;
}

static void *feeder(void *arg)
{
    struct pipeline *p = arg;
    for (long n = 1; n <= p->nitems; n++) {
        int rc = chan_send(p->items, &n);
        if (rc != 0)
            die("send item", -rc);
    }
    int rc = chan_close(p->items);
    if (rc != 0)
        die("close items", -rc);
    return NULL;
}

static void *worker(void *arg)
{
    struct pipeline *p = arg;
    const struct timespec work = { 0, 1000000 }; /* 1 ms of "work" */
    long n;
    int rc;
    while ((rc = chan_recv(p->items, &n)) == 0) {
        nanosleep(&work, NULL);
        struct result r = { n, is_prime(n) };
        if ((rc = chan_send(p->results, &r)) != 0)
            die("send result", -rc);
    }
    if (rc != -EPIPE)
        die("receive item", -rc);
    /* The last one out closes results: nobody sends on it any more. */
    if (atomic_fetch_sub(&p->running, 1) == 1 &&
        (rc = chan_close(p->results)) != 0)
        die("close results", -rc);
    return NULL;
}

static long parse(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "usage: progress [ITEMS [WORKERS [PERIOD_MS]]]\n");
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 4) {
        fprintf(stderr, "usage: progress [ITEMS [WORKERS [PERIOD_MS]]]\n");
        return 2;
    }
    struct pipeline p;
    p.nitems = argc > 1 ? parse(argv[1], 0, MAX_ITEMS) : 200;
    long nworkers = argc > 2 ? parse(argv[2], 1, MAX_WORKERS) : 4;
    long period_ms = argc > 3 ? parse(argv[3], 1, 60000) : 10;
    atomic_init(&p.running, nworkers);
    p.items = chan_make(sizeof(long), 16);
    p.results = chan_make(sizeof(struct result), 16);
    if (!p.items || !p.results)
        die("chan_make", ENOMEM);
    chan_t *tick = chan_tick(period_ms * 1000000);
    if (!tick)
        die("chan_tick", ENOMEM);

    pthread_t feed, workers[MAX_WORKERS];
    int rc = pthread_create(&feed, NULL, feeder, &p);
    if (rc != 0)
        die("pthread_create", rc);
    for (long i = 0; i < nworkers; i++)
        if ((rc = pthread_create(&workers[i], NULL, worker, &p)) != 0)
            die("pthread_create", rc);

    long done = 0, primes = 0;
    struct result r;
    int64_t now;
    for (;;) {
        chan_case_t cases[] = {
            CHAN_RECV_CASE(p.results, &r),
            CHAN_RECV_CASE(tick, &now),
        };
        int i = chan_select(cases, 2, CHAN_FOREVER);
        if (i < 0)
            die("chan_select", -i);
        if (i == 1) {
            printf("progress: %ld/%ld\n", done, p.nitems);
            fflush(stdout);
            continue;
        }
        if (cases[0].result == -EPIPE)
            break; /* closed by the last worker: everything is in */
        done++;
        primes += r.prime;
    }

    /* Stopping a running ticker returns 0; releasing would stop it too. */
    if ((rc = chan_timer_stop(tick)) != 0)
        die("chan_timer_stop", -rc);
    chan_release(tick);
    pthread_join(feed, NULL);
    for (long i = 0; i < nworkers; i++)
        pthread_join(workers[i], NULL);
    if (done != p.nitems) {
        fprintf(stderr, "progress: %ld results for %ld items\n", done, p.nitems);
        return 1;
    }
    printf("done: %ld items, %ld primes\n", done, primes);
    chan_release(p.items);
    chan_release(p.results);
    return 0;
}
