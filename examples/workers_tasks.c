/*
 * workers_tasks.c - a worker pool of scheduler tasks, fed and drained by
 * plain threads, with a wait group to know when the workers are done.
 *
 *   usage: workers_tasks [WORKERS [JOBS [THREADS]]]
 *          (defaults: 8 worker tasks, 1000 jobs, one thread per CPU)
 *
 * What it shows:
 *  - one channel connecting threads and tasks: main (a thread) sends jobs
 *    to the worker tasks and reads their results back; a blocked task
 *    parks, a blocked thread sleeps, and neither side needs to know which
 *    the other is;
 *  - a wait group in tasks: each worker calls chan_wg_done when the jobs
 *    channel is closed and drained; a closer task waits for all of them
 *    (parked, not holding a thread) and then closes the results channel,
 *    so main can read results until -EPIPE, like Go's
 *    "for r := range results";
 *  - chan_yield: a worker yields between jobs to let the others run.
 *
 * Job i (1..JOBS) asks for i*i.  Main checks every result, and that no job
 * comes back twice, then prints one line:
 *
 *   workers=8 jobs=1000 results=1000 sum=333833500 ok
 *
 * Any failure prints a message and exits with status 1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chan.h>

#define MAX_WORKERS 100000
#define MAX_JOBS 1000000L /* keeps the sum of squares within long long */

static void die(const char *what, int err)
{
    fprintf(stderr, "workers_tasks: %s: %s\n", what, strerror(err));
    exit(1);
}

struct result {
    long job;
    long long square;
};

struct pool {
    chan_t *jobs;      /* long; closed by the feeder thread */
    chan_t *results;   /* struct result; closed by the closer task */
    chan_wg_t *wg;     /* one count per worker task */
    long njobs;
};

static void worker(void *arg)
{
    struct pool *p = arg;
    long job;
    while (chan_recv(p->jobs, &job) == 0) {
        struct result r = { job, (long long)job * job };
        int rc = chan_send(p->results, &r);
        if (rc < 0)
            die("chan_send", -rc);
        chan_yield();
    }
    chan_wg_done(p->wg);
}

static void closer(void *arg)
{
    struct pool *p = arg;
    chan_wg_wait(p->wg);
    chan_close(p->results);
}

static void *feeder(void *arg)
{
    struct pool *p = arg;
    for (long i = 1; i <= p->njobs; i++) {
        int rc = chan_send(p->jobs, &i);
        if (rc < 0)
            die("chan_send", -rc);
    }
    chan_close(p->jobs);
    return NULL;
}

static long parse(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi) {
        fprintf(stderr, "workers_tasks: %s must be a number from %ld to %ld\n",
                what, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 4) {
        fprintf(stderr, "usage: workers_tasks [WORKERS [JOBS [THREADS]]]\n");
        return 2;
    }
    long nworkers = argc > 1 ? parse(argv[1], 1, MAX_WORKERS, "WORKERS") : 8;
    struct pool p = { .njobs = argc > 2 ? parse(argv[2], 1, MAX_JOBS, "JOBS")
                                        : 1000 };
    unsigned threads = argc > 3 ? (unsigned)parse(argv[3], 1, 1024, "THREADS")
                                : 0;

    p.jobs = chan_make(sizeof(long), 64);
    p.results = chan_make(sizeof(struct result), 64);
    p.wg = chan_wg_new();
    char *seen = calloc((size_t)p.njobs + 1, 1);
    if (!p.jobs || !p.results || !p.wg || !seen)
        die("allocating", ENOMEM);

    chan_sched_opts_t opts = { .threads = threads };
    chan_sched_t *s = chan_sched_new(&opts);
    if (!s)
        die("chan_sched_new", ENOMEM);
    int rc = chan_wg_add(p.wg, (int)nworkers);
    if (rc < 0)
        die("chan_wg_add", -rc);
    for (long i = 0; i < nworkers; i++)
        if ((rc = chan_go(s, worker, &p)) < 0)
            die("chan_go", -rc);
    if ((rc = chan_go(s, closer, &p)) < 0)
        die("chan_go", -rc);

    pthread_t th;
    if ((rc = pthread_create(&th, NULL, feeder, &p)) != 0)
        die("pthread_create", rc);

    long count = 0;
    long long sum = 0;
    struct result r;
    while ((rc = chan_recv(p.results, &r)) == 0) {
        if (r.job < 1 || r.job > p.njobs || seen[r.job] ||
            r.square != (long long)r.job * r.job) {
            fprintf(stderr, "workers_tasks: bad result for job %ld\n", r.job);
            return 1;
        }
        seen[r.job] = 1;
        count++;
        sum += r.square;
    }
    if (rc != -EPIPE)
        die("chan_recv", -rc);
    if ((rc = pthread_join(th, NULL)) != 0)
        die("pthread_join", rc);
    chan_sched_free(s);

    if (count != p.njobs) {
        fprintf(stderr, "workers_tasks: %ld results for %ld jobs\n", count,
                p.njobs);
        return 1;
    }
    printf("workers=%ld jobs=%ld results=%ld sum=%lld ok\n", nworkers, p.njobs,
           count, sum);
    chan_release(p.jobs);
    chan_release(p.results);
    chan_wg_free(p.wg);
    free(seen);
    return 0;
}
