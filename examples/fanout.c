/*
 * fanout.c - fan-out / fan-in with a wait group: several worker threads
 * drain one jobs channel, a closer waits for all of them and closes the
 * results channel.
 *
 *   usage: fanout [WORKERS [ITEMS]]
 *          (defaults: 4 workers, 10000 items)
 *
 * What it shows:
 *  - fan-out: WORKERS threads receive from one jobs channel until it is
 *    closed and drained (-EPIPE), like Go's "for n := range jobs";
 *  - a wait group counting the workers: chan_wg_add before each thread
 *    starts (never inside it, or the closer could see zero too early),
 *    chan_wg_done as each one leaves;
 *  - Go's closer idiom, "go func() { wg.Wait(); close(results) }()": a
 *    thread waits for the group, then closes results, so main can read
 *    results until -EPIPE without counting anything itself.
 *
 * Item n (1..ITEMS) is answered with the number of Collatz steps from n
 * down to 1.  Output, one line:
 *
 *   fanout: workers=4 items=10000 steps=849666
 *
 * Any failure prints a message and exits with status 1; bad arguments
 * exit with status 2.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chan.h>

#define MAX_WORKERS 256
#define MAX_ITEMS 10000000L

static void die(const char *what, int err)
{
    fprintf(stderr, "fanout: %s: %s\n", what, strerror(err));
    exit(1);
}

/* Shared by every thread; main frees it all after joining them. */
struct fan {
    chan_t *jobs;     /* long: item numbers; closed by main when all are sent */
    chan_t *results;  /* long: steps per item; closed by the closer thread */
    chan_wg_t *wg;    /* counts the running workers */
    long items;       /* how many jobs the feeder sends */
};

static long collatz_steps(long n)
{
    long steps = 0;
    while (n != 1) {
        n = n % 2 ? 3 * n + 1 : n / 2;
        steps++;
    }
    return steps;
}

static void *worker(void *arg)
{
    struct fan *f = arg;
    long n;
    int rc;
    while ((rc = chan_recv(f->jobs, &n)) == 0) {
        long steps = collatz_steps(n);
        if ((rc = chan_send(f->results, &steps)) != 0)
            die("send result", -rc);
    }
    if (rc != -EPIPE)
        die("receive job", -rc);
    if ((rc = chan_wg_done(f->wg)) != 0)
        die("chan_wg_done", -rc);
    return NULL;
}

static void *closer(void *arg)
{
    struct fan *f = arg;
    int rc = chan_wg_wait(f->wg);
    if (rc != 0)
        die("chan_wg_wait", -rc);
    /* Every worker has sent its last result: nobody sends any more. */
    if ((rc = chan_close(f->results)) != 0)
        die("close results", -rc);
    return NULL;
}

/* Sends 1..items, then closes jobs: "no more jobs" is a close. */
static void *feeder(void *arg)
{
    struct fan *f = arg;
    for (long n = 1; n <= f->items; n++) {
        int rc = chan_send(f->jobs, &n);
        if (rc != 0)
            die("send job", -rc);
    }
    int rc = chan_close(f->jobs);
    if (rc != 0)
        die("close jobs", -rc);
    return NULL;
}

static long parse(const char *s, long min, long max)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "usage: fanout [WORKERS [ITEMS]]\n");
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 3) {
        fprintf(stderr, "usage: fanout [WORKERS [ITEMS]]\n");
        return 2;
    }
    long nworkers = argc > 1 ? parse(argv[1], 1, MAX_WORKERS) : 4;
    long items = argc > 2 ? parse(argv[2], 0, MAX_ITEMS) : 10000;

    struct fan f;
    f.jobs = chan_make(sizeof(long), 64);
    f.results = chan_make(sizeof(long), 64);
    f.wg = chan_wg_new();
    f.items = items;
    if (!f.jobs || !f.results || !f.wg)
        die("setup", ENOMEM);

    pthread_t threads[MAX_WORKERS], closer_thread;
    for (long i = 0; i < nworkers; i++) {
        int rc = chan_wg_add(f.wg, 1); /* before the thread exists */
        if (rc != 0)
            die("chan_wg_add", -rc);
        if ((rc = pthread_create(&threads[i], NULL, worker, &f)) != 0)
            die("pthread_create", rc);
    }
    int rc = pthread_create(&closer_thread, NULL, closer, &f);
    if (rc != 0)
        die("pthread_create", rc);

    /* The jobs are fed from a thread of their own, so that main reads
     * results at the same time: with both channels full, a main that only
     * sent would wait for workers that wait for it. */
    pthread_t feed;
    if ((rc = pthread_create(&feed, NULL, feeder, &f)) != 0)
        die("pthread_create", rc);

    long got = 0, steps = 0, s;
    while ((rc = chan_recv(f.results, &s)) == 0) {
        got++;
        steps += s;
    }
    if (rc != -EPIPE)
        die("receive result", -rc);

    pthread_join(feed, NULL);
    for (long i = 0; i < nworkers; i++)
        pthread_join(threads[i], NULL);
    pthread_join(closer_thread, NULL);
    if (got != items) {
        fprintf(stderr, "fanout: %ld results for %ld items\n", got, items);
        return 1;
    }
    printf("fanout: workers=%ld items=%ld steps=%ld\n", nworkers, items, steps);
    chan_release(f.jobs);
    chan_release(f.results);
    chan_wg_free(f.wg);
    return 0;
}
