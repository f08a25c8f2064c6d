/*
 * fanout_tasks.c - fan-out / fan-in with many tasks: start one task per
 * piece of work, collect every answer on one channel.
 *
 *   usage: fanout_tasks [TASKS [THREADS]]
 *          (defaults: 100000 tasks, one worker thread per CPU)
 *
 * What it shows:
 *  - tasks are cheap enough to start one per item: 100,000 tasks, each
 *    with its own stack (64 KiB, mapped only when the task first runs and
 *    reused from a cache when it ends);
 *  - fan-in on one buffered channel: every task sends its answer; main, a
 *    plain thread, receives exactly TASKS answers;
 *  - chan_sleep in a task: every hundredth task naps for a millisecond,
 *    parked on the library's timer while its worker runs other tasks.
 *
 * Task i (1..TASKS) answers i*i.  Output, one line:
 *
 *   tasks=100000 sum=333338333350000 ok
 *
 * Any failure prints a message and exits with status 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chan.h>

#define MAX_TASKS 1000000L /* keeps the sum of squares within long long */

static void die(const char *what, int err)
{
    fprintf(stderr, "fanout_tasks: %s: %s\n", what, strerror(err));
    exit(1);
}

static chan_t *answers; /* long long; buffered */

/* The argument is the task's number, carried in the pointer itself. */
static void square(void *arg)
{
    long i = (long)(intptr_t)arg;
    if (i % 100 == 0)
        chan_sleep(1000000);
    long long sq = (long long)i * i;
    int rc = chan_send(answers, &sq);
    if (rc < 0)
        die("chan_send", -rc);
}

static long parse(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi) {
        fprintf(stderr, "fanout_tasks: %s must be a number from %ld to %ld\n",
                what, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 3) {
        fprintf(stderr, "usage: fanout_tasks [TASKS [THREADS]]\n");
        return 2;
    }
    long n = argc > 1 ? parse(argv[1], 1, MAX_TASKS, "TASKS") : 100000;
    unsigned threads = argc > 2 ? (unsigned)parse(argv[2], 1, 1024, "THREADS")
                                : 0;

    answers = chan_make(sizeof(long long), 1024);
    if (!answers)
        die("chan_make", ENOMEM);
    chan_sched_opts_t opts = { .threads = threads };
    chan_sched_t *s = chan_sched_new(&opts);
    if (!s)
        die("chan_sched_new", ENOMEM);

    /* Fan out. */
    for (long i = 1; i <= n; i++) {
        int rc = chan_go(s, square, (void *)(intptr_t)i);
        if (rc < 0)
            die("chan_go", -rc);
    }

    /* Fan in: exactly n answers, in whatever order the tasks finish. */
    long long sum = 0;
    for (long i = 0; i < n; i++) {
        long long sq;
        int rc = chan_recv(answers, &sq);
        if (rc < 0)
            die("chan_recv", -rc);
        sum += sq;
    }
    int rc = chan_sched_wait(s);
    if (rc < 0)
        die("chan_sched_wait", -rc);
    chan_sched_free(s);

    long long want = (long long)n * (n + 1) * (2 * n + 1) / 6;
    if (sum != want) {
        fprintf(stderr, "fanout_tasks: sum %lld, want %lld\n", sum, want);
        return 1;
    }
    printf("tasks=%ld sum=%lld ok\n", n, sum);
    chan_release(answers);
    return 0;
}
