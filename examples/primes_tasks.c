/*
 * primes_tasks.c - the concurrent prime sieve as scheduler tasks: a
 * pipeline of filter tasks joined by unbuffered channels.
 *
 *   usage: primes_tasks [N [THREADS]]
 *          print the first N primes (default 100) using THREADS worker
 *          threads (default: one per CPU)
 *
 * What it shows:
 *  - tasks instead of threads: a stage is a chan_go() task with a 64 KiB
 *    stack, so a pipeline of 10,000 stages (primes_tasks 10000) runs on a
 *    handful of threads; every chan_send/chan_recv that would block parks
 *    the task and its worker runs another;
 *  - a pipeline that grows while it runs: the generator sends 2, 3, 4, ...
 *    and each prime found adds a filter task that drops its multiples;
 *  - tasks starting tasks (chan_go with a NULL scheduler from a task);
 *  - shutdown by broadcast: closing "done" wakes every stage blocked in its
 *    chan_select; each stage closes its output and returns;
 *  - chan_sched_wait() in main, which returns once every task, including
 *    those started by tasks, has returned.
 *
 * Output: the primes on one line, separated by spaces.  Every call is
 * checked; an error is reported and the program exits with status 1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chan.h>

/* The sieve's work grows faster than N squared: 10,000 primes means about
 * fifty million channel operations, some seconds of work. */
#define MAX_PRIMES 100000

static void die(const char *what, int err)
{
    fprintf(stderr, "primes_tasks: %s: %s\n", what, strerror(err));
    exit(1);
}

/* One stage; the generator is the stage with prime 0. */
struct stage {
    chan_t *in;    /* from the previous stage (NULL for the generator) */
    chan_t *out;   /* to the next stage; this stage closes it */
    chan_t *done;  /* closed by the sieve when it has N primes */
    long prime;
};

/* Sends v to st->out unless done is closed first; 0 when sent. */
static int pass_on(struct stage *st, long v)
{
    chan_case_t cases[2] = { CHAN_SEND_CASE(st->out, &v),
                             CHAN_RECV_CASE(st->done, NULL) };
    int i = chan_select(cases, 2, CHAN_FOREVER);
    if (i < 0)
        die("chan_select", -i);
    return i == 0 && cases[0].result == 0 ? 0 : -1;
}

static void generate(void *arg)
{
    struct stage *st = arg;
    for (long v = 2; pass_on(st, v) == 0; v++)
        ;
    chan_close(st->out);
}

static void filter(void *arg)
{
    struct stage *st = arg;
    long v;
    while (chan_recv(st->in, &v) == 0) /* -EPIPE: the stage before ended */
        if (v % st->prime != 0 && pass_on(st, v) != 0)
            break;
    chan_close(st->out);
}

struct sieve {
    long n;
    long *primes;         /* the result, n entries */
    struct stage *stages; /* n of them: the generator and n - 1 filters */
    chan_t **chans;       /* n + 1: stage i writes chans[i] */
    chan_t *done;
};

/* The sieve itself, also a task: reads each prime from the end of the
 * pipeline and puts a new filter there. */
static void sieve(void *arg)
{
    struct sieve *sv = arg;
    sv->stages[0] = (struct stage){ .out = sv->chans[0], .done = sv->done };
    int rc = chan_go(NULL, generate, &sv->stages[0]);
    if (rc < 0)
        die("chan_go", -rc);
    for (long i = 0; i < sv->n; i++) {
        rc = chan_recv(sv->chans[i], &sv->primes[i]);
        if (rc < 0)
            die("chan_recv", -rc);
        if (i == sv->n - 1)
            break; /* the last prime needs no filter */
        sv->stages[i + 1] = (struct stage){ .in = sv->chans[i],
                                            .out = sv->chans[i + 1],
                                            .done = sv->done,
                                            .prime = sv->primes[i] };
        rc = chan_go(NULL, filter, &sv->stages[i + 1]);
        if (rc < 0)
            die("chan_go", -rc);
    }
    /* Every stage is blocked sending, or about to be: the broadcast. */
    chan_close(sv->done);
}

static long parse(const char *s, long lo, long hi, const char *what)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || end == s || v < lo || v > hi) {
        fprintf(stderr, "primes_tasks: %s must be a number from %ld to %ld\n",
                what, lo, hi);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 3) {
        fprintf(stderr, "usage: primes_tasks [N [THREADS]]\n");
        return 2;
    }
    struct sieve sv = { .n = argc > 1 ? parse(argv[1], 1, MAX_PRIMES, "N")
                                      : 100 };
    unsigned threads = argc > 2 ? (unsigned)parse(argv[2], 1, 1024, "THREADS")
                                : 0;

    sv.primes = calloc((size_t)sv.n, sizeof *sv.primes);
    sv.stages = calloc((size_t)sv.n, sizeof *sv.stages);
    sv.chans = calloc((size_t)sv.n + 1, sizeof *sv.chans);
    sv.done = chan_make(0, 0);
    if (!sv.primes || !sv.stages || !sv.chans || !sv.done)
        die("allocating", ENOMEM);
    for (long i = 0; i <= sv.n; i++)
        if (!(sv.chans[i] = chan_make(sizeof(long), 0)))
            die("chan_make", ENOMEM);

    chan_sched_opts_t opts = { .threads = threads };
    chan_sched_t *s = chan_sched_new(&opts);
    if (!s)
        die("chan_sched_new", ENOMEM);
    int rc = chan_go(s, sieve, &sv);
    if (rc < 0)
        die("chan_go", -rc);
    rc = chan_sched_wait(s);
    if (rc < 0)
        die("chan_sched_wait", -rc);
    chan_sched_free(s);

    for (long i = 0; i < sv.n; i++)
        printf(i == 0 ? "%ld" : " %ld", sv.primes[i]);
    printf("\n");
    if (fflush(stdout) != 0)
        die("writing the output", EIO);

    /* Every task has returned: nobody uses the channels any more. */
    for (long i = 0; i <= sv.n; i++)
        chan_release(sv.chans[i]);
    chan_release(sv.done);
    free(sv.chans);
    free(sv.stages);
    free(sv.primes);
    return 0;
}
