/*
 * primes.c - the concurrent prime sieve: a pipeline of threads joined by
 * unbuffered channels.
 *
 *   usage: primes [N]      print the first N primes (default 100)
 *
 * What it shows:
 *  - unbuffered channels as rendezvous points between threads;
 *  - a pipeline that grows while it runs: a generator thread sends
 *    2, 3, 4, ... and each prime found adds a filter thread that drops the
 *    multiples of that prime;
 *  - references: every thread holds its own reference to the channels it
 *    uses (chan_retain) and drops it when it returns (chan_release);
 *  - clean shutdown with a "done" channel: closing it is a broadcast that
 *    every stage sees in its chan_select; each stage then closes its output
 *    channel, as the sending side does in Go, and returns.
 *
 * Pipeline for N = 4 (main reads 2, 3, 5, 7):
 *
 *   generator -> [%2] -> [%3] -> [%5] -> main
 *
 * Every call is checked: the library returns a negative errno value, and
 * the program reports it and exits with status 1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chan.h>

/* Upper limit for N: one thread per prime, and the work grows faster than
 * N squared (N = 1000 takes a few seconds), so keep it modest. */
#define MAX_PRIMES 2000

/* Stack for each stage thread: they only loop over a few locals.  Never
 * below the system's minimum, which is larger on some machines (128 KiB
 * on AArch64, whose pages may be 64 KiB). */
#define STAGE_STACK (64 * 1024)

static size_t stage_stack(void)
{
    long min = sysconf(_SC_THREAD_STACK_MIN);
    return min > STAGE_STACK ? (size_t)min : STAGE_STACK;
}

static void die(const char *what, int err)
{
    fprintf(stderr, "primes: %s: %s\n", what, strerror(err));
    exit(1);
}

/* One stage of the pipeline; the generator is the stage with prime 0. */
struct stage {
    pthread_t thread;
    chan_t *in;    /* values from the previous stage (NULL for the generator) */
    chan_t *out;   /* values to the next stage; this stage closes it */
    chan_t *done;  /* closed by main to stop the pipeline */
    long prime;    /* this filter drops the multiples of prime */
};

/*
 * Sends v on out unless done is closed first.  Returns 0 if v was sent,
 * -EPIPE if the pipeline is shutting down.
 */
static int send_or_done(struct stage *st, long v)
{
    chan_case_t cases[] = {
        CHAN_SEND_CASE(st->out, &v),
        CHAN_RECV_CASE(st->done, NULL),
    };
    int i = chan_select(cases, 2, CHAN_FOREVER);
    if (i < 0)
        die("chan_select", -i);
    if (i == 1) {
        /* done carries no values: the only thing a receive can see is the
         * close. */
        if (cases[1].result != -EPIPE)
            die("done channel", EPROTO);
        return -EPIPE;
    }
    /* Only this stage closes out, so the send cannot fail. */
    if (cases[0].result != 0)
        die("send to the next stage", -cases[0].result);
    return 0;
}

/* A stage's way out: close its output, as the sender does in Go, then drop
 * its references to the channels. */
static void *stage_finish(struct stage *st)
{
    int rc = chan_close(st->out);
    if (rc < 0)
        die("chan_close", -rc);
    chan_release(st->in);
    chan_release(st->out);
    chan_release(st->done);
    st->in = st->out = st->done = NULL;
    return NULL;
}

/* The generator: 2, 3, 4, ... until done is closed. */
static void *generate(void *arg)
{
    struct stage *st = arg;
    for (long v = 2; send_or_done(st, v) == 0; v++)
        ;
    return stage_finish(st);
}

/* A filter: passes on the values of in that prime does not divide. */
static void *filter(void *arg)
{
    struct stage *st = arg;
    for (;;) {
        long v;
        int rc = chan_recv(st->in, &v);
        if (rc == -EPIPE)
            break; /* the previous stage closed its output: shutting down */
        if (rc < 0)
            die("chan_recv", -rc);
        if (v % st->prime != 0 && send_or_done(st, v) < 0)
            break;
    }
    return stage_finish(st);
}

/* Runs fn(st) on a new thread with a small stack.  The caller has taken the
 * references st holds; the thread drops them in stage_finish. */
static void stage_start(struct stage *st, void *(*fn)(void *))
{
    pthread_attr_t attr;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        die("pthread_attr_init", rc);
    rc = pthread_attr_setstacksize(&attr, stage_stack());
    if (rc != 0)
        die("pthread_attr_setstacksize", rc);
    rc = pthread_create(&st->thread, &attr, fn, st);
    if (rc != 0)
        die("pthread_create", rc);
    rc = pthread_attr_destroy(&attr);
    if (rc != 0)
        die("pthread_attr_destroy", rc);
}

/* Waits for a stage's thread to return. */
static void stage_end(struct stage *st)
{
    int rc = pthread_join(st->thread, NULL);
    if (rc != 0)
        die("pthread_join", rc);
}

int main(int argc, char **argv)
{
    long n = 100;
    if (argc > 2) {
        fprintf(stderr, "usage: primes [N]\n");
        return 2;
    }
    if (argc == 2) {
        char *end;
        errno = 0;
        n = strtol(argv[1], &end, 10);
        if (errno != 0 || *end != '\0' || end == argv[1] || n < 1 ||
            n > MAX_PRIMES) {
            fprintf(stderr, "primes: N must be a number from 1 to %d\n",
                    MAX_PRIMES);
            return 2;
        }
    }

    /* The generator plus one filter for each prime but the last. */
    struct stage *stages = calloc((size_t)n, sizeof *stages);
    if (!stages)
        die("calloc", ENOMEM);

    chan_t *done = chan_make(0, 0); /* carries no values: only closed */
    chan_t *ch = chan_make(sizeof(long), 0);
    if (!done || !ch)
        die("chan_make", ENOMEM);

    /* The stages hold their own references, so main may drop its own as
     * soon as it stops using a channel. */
    stages[0] = (struct stage){ .in = NULL, .out = chan_retain(ch),
                                .done = chan_retain(done) };
    stage_start(&stages[0], generate);

    for (long i = 0; i < n; i++) {
        long prime;
        int rc = chan_recv(ch, &prime);
        if (rc < 0)
            die("chan_recv", -rc);
        printf(i == 0 ? "%ld" : " %ld", prime);
        if (i == n - 1)
            break; /* the last prime needs no filter */

        chan_t *next = chan_make(sizeof(long), 0);
        if (!next)
            die("chan_make", ENOMEM);
        stages[i + 1] = (struct stage){ .in = chan_retain(ch),
                                        .out = chan_retain(next),
                                        .done = chan_retain(done),
                                        .prime = prime };
        stage_start(&stages[i + 1], filter);
        chan_release(ch); /* main reads from next from now on */
        ch = next;
    }
    printf("\n");
    if (fflush(stdout) != 0)
        die("writing the output", EIO);

    /*
     * Shutdown.  Closing done wakes every stage blocked sending; each then
     * closes its output, which ends the next stage's chan_recv with -EPIPE,
     * so the close travels down the pipeline and every thread returns.
     */
    int rc = chan_close(done);
    if (rc < 0)
        die("chan_close", -rc);
    for (long i = 0; i < n; i++)
        stage_end(&stages[i]);

    /* The last stage closed ch on its way out: a second close says so. */
    rc = chan_close(ch);
    if (rc != -EPIPE)
        die("the last stage did not close its output", rc < 0 ? -rc : EPROTO);
    chan_release(ch);
    chan_release(done);
    free(stages);
    return 0;
}
