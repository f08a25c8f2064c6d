/*
 * workers.c - a worker pool: jobs in on one channel, results out on another,
 * shutdown by closing channels.
 *
 *   usage: workers [WORKERS [JOBS [STOP_AFTER]]]
 *          (defaults: 4 workers, 1000 jobs, no early stop)
 *
 * What it shows:
 *  - a producer thread feeding a buffered jobs channel and closing it when
 *    there are no more jobs ("no more values" is a close, as in Go);
 *  - WORKERS threads, each looping over a chan_select on the jobs channel
 *    and a quit channel; a closed jobs channel shows up as result -EPIPE;
 *  - the last worker to leave closes the results channel, so main can read
 *    results until -EPIPE, like Go's "for r := range results";
 *  - cancellation: with STOP_AFTER, main closes quit after that many
 *    results; quit is a broadcast that wakes the producer and every worker,
 *    wherever each of them is blocked.
 *
 * Job i (1..JOBS) asks for i*i.  Main checks every result and that no job
 * comes back twice, then prints one summary line:
 *
 *   workers=4 jobs=1000 results=1000 sum=333833500 ok
 *
 * (sum is the sum of the squares, JOBS*(JOBS+1)*(2*JOBS+1)/6 for a full run).
 * With STOP_AFTER the line reads "results=K stopped" instead, K being
 * STOP_AFTER.  Any failure prints a message and exits with status 1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chan.h>

#define MAX_WORKERS 256
#define MAX_JOBS 1000000L /* keeps the sum of squares within long long */

static void die(const char *what, int err)
{
    fprintf(stderr, "workers: %s: %s\n", what, strerror(err));
    exit(1);
}

/* What a worker sends back: values are copied, so a small struct is fine. */
struct result {
    long job;
    long long square;
};

/* Everything the threads share; the channels live until main frees them
 * after every thread has been joined, so no thread needs references. */
struct pool {
    chan_t *jobs;       /* long: job numbers; closed by the producer */
    chan_t *results;    /* struct result; closed by the last worker out */
    chan_t *quit;       /* no values; closed by main to cancel */
    long njobs;
    atomic_int running; /* workers still running */
};

/*
 * Sends *v on ch unless quit is closed first.  Returns 0 if sent, -EPIPE if
 * quit was closed.
 */
static int send_or_quit(struct pool *p, chan_t *ch, const void *v)
{
    chan_case_t cases[] = {
        CHAN_SEND_CASE(ch, v),
        CHAN_RECV_CASE(p->quit, NULL),
    };
    int i = chan_select(cases, 2, CHAN_FOREVER);
    if (i < 0)
        die("chan_select", -i);
    if (i == 1)
        return -EPIPE; /* quit has no values: a receive means it closed */
    if (cases[0].result != 0)
        die("chan_select send", -cases[0].result);
    return 0;
}

static void *producer(void *arg)
{
    struct pool *p = arg;
    for (long job = 1; job <= p->njobs; job++)
        if (send_or_quit(p, p->jobs, &job) < 0)
            break;
    /* No more jobs: the workers see -EPIPE once the buffer is drained. */
    int rc = chan_close(p->jobs);
    if (rc < 0)
        die("chan_close jobs", -rc);
    return NULL;
}

static void *worker(void *arg)
{
    struct pool *p = arg;
    for (;;) {
        long job;
        chan_case_t cases[] = {
            CHAN_RECV_CASE(p->jobs, &job),
            CHAN_RECV_CASE(p->quit, NULL),
        };
        int i = chan_select(cases, 2, CHAN_FOREVER);
        if (i < 0)
            die("chan_select", -i);
        if (i == 1 || cases[0].result == -EPIPE)
            break; /* cancelled, or the jobs channel is closed and drained */
        if (cases[0].result != 0)
            die("chan_select recv", -cases[0].result);

        struct result r = { .job = job, .square = (long long)job * job };
        if (send_or_quit(p, p->results, &r) < 0)
            break;
    }
    /* The last worker out closes results: nobody sends on it any more. */
    if (atomic_fetch_sub(&p->running, 1) == 1) {
        int rc = chan_close(p->results);
        if (rc < 0)
            die("chan_close results", -rc);
    }
    return NULL;
}

/* Parses argv[i] as a number in [min, max], or returns def if absent. */
static long arg(int argc, char **argv, int i, long def, long min, long max)
{
    if (i >= argc)
        return def;
    char *end;
    errno = 0;
    long v = strtol(argv[i], &end, 10);
    if (errno != 0 || *end != '\0' || end == argv[i] || v < min || v > max) {
        fprintf(stderr, "workers: argument %d must be a number from %ld to %ld\n",
                i, min, max);
        fprintf(stderr, "usage: workers [WORKERS [JOBS [STOP_AFTER]]]\n");
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 4) {
        fprintf(stderr, "usage: workers [WORKERS [JOBS [STOP_AFTER]]]\n");
        return 2;
    }
    int nworkers = (int)arg(argc, argv, 1, 4, 1, MAX_WORKERS);
    long njobs = arg(argc, argv, 2, 1000, 1, MAX_JOBS);
    long stop_after = arg(argc, argv, 3, 0, 1, njobs); /* 0: run to the end */

    struct pool p = { .njobs = njobs };
    atomic_init(&p.running, nworkers);
    p.jobs = chan_make(sizeof(long), 16);
    p.results = chan_make(sizeof(struct result), 16);
    p.quit = chan_make(0, 0);
    unsigned char *seen = calloc((size_t)njobs + 1, 1);
    pthread_t *threads = calloc((size_t)nworkers + 1, sizeof *threads);
    if (!p.jobs || !p.results || !p.quit || !seen || !threads)
        die("allocation", ENOMEM);

    int rc = pthread_create(&threads[0], NULL, producer, &p);
    if (rc != 0)
        die("pthread_create", rc);
    for (int i = 1; i <= nworkers; i++) {
        rc = pthread_create(&threads[i], NULL, worker, &p);
        if (rc != 0)
            die("pthread_create", rc);
    }

    /* Like Go's "for r := range results": until the channel is closed. */
    long count = 0;
    long long sum = 0;
    int stopped = 0;
    struct result r;
    while ((rc = chan_recv(p.results, &r)) == 0) {
        if (stopped)
            continue; /* after cancelling: drain what was already sent */
        if (r.job < 1 || r.job > njobs || seen[r.job] ||
            r.square != (long long)r.job * r.job)
            die("bad or duplicated result", EPROTO);
        seen[r.job] = 1;
        count++;
        sum += r.square;
        if (count == stop_after) {
            rc = chan_close(p.quit); /* tell everybody to stop */
            if (rc < 0)
                die("chan_close quit", -rc);
            stopped = 1;
        }
    }
    if (rc != -EPIPE)
        die("chan_recv", -rc);

    for (int i = 0; i <= nworkers; i++) {
        rc = pthread_join(threads[i], NULL);
        if (rc != 0)
            die("pthread_join", rc);
    }

    if (stopped) {
        printf("workers=%d jobs=%ld results=%ld stopped\n", nworkers, njobs,
               count);
    } else {
        long long want = (long long)njobs * (njobs + 1) * (2 * njobs + 1) / 6;
        if (count != njobs || sum != want)
            die("results missing", EPROTO);
        printf("workers=%d jobs=%ld results=%ld sum=%lld ok\n", nworkers,
               njobs, count, sum);
    }

    chan_release(p.jobs);
    chan_release(p.results);
    chan_release(p.quit);
    free(seen);
    free(threads);
    return 0;
}
