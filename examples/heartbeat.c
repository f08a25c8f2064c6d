/*
 * heartbeat.c - a monitor notices that a worker has stopped sending
 * heartbeats, using timeouts on channel operations.
 *
 *   usage: heartbeat [BEATS [INTERVAL_MS [STALL_AT]]]
 *          (defaults: 8 beats, 10 ms apart, stall after beat 4;
 *           STALL_AT 0 means never stall)
 *
 * A worker thread does BEATS steps of work and sends a heartbeat after each
 * one.  After beat STALL_AT it stalls, as if stuck on a lock or a slow disk,
 * until somebody nudges it.  The monitor (main) waits for heartbeats with a
 * timeout of 5 intervals; when that passes without one it reports the
 * missed heartbeat and nudges the worker, which carries on.  When the
 * worker is done it closes the heartbeat channel and sends its result.
 *
 * What it shows:
 *  - chan_select with a positive timeout: -ETIMEDOUT means nothing arrived
 *    in time (Go: select with a case <-time.After(d));
 *  - chan_timedrecv as an interruptible sleep: the worker waits on the stop
 *    channel for one interval, so closing stop ends its sleep at once;
 *  - a closed channel in a select is always ready (result -EPIPE), so the
 *    monitor disables that case by setting its channel to NULL, like a nil
 *    channel in a Go select;
 *  - stopping a thread by closing a channel: if the worker stays silent even
 *    after being nudged, the monitor gives up and closes stop.
 *
 * Output (the defaults):
 *   beat 1 ... beat 4
 *   missed heartbeat after beat 4
 *   beat 5 ... beat 8
 *   worker finished: beats=8 result=36
 *
 * The result is the sum of the beat numbers.  On a badly overloaded
 * machine a late heartbeat may also be reported as missed; the run still
 * succeeds.  Any failure prints a message and exits with status 1.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chan.h>

#define NS_PER_MS 1000000LL

static void die(const char *what, int err)
{
    fprintf(stderr, "heartbeat: %s: %s\n", what, strerror(err));
    exit(1);
}

struct job {
    long beats;         /* steps of work, one heartbeat each */
    long stall_at;      /* stall after this beat (0: never) */
    int64_t interval;   /* ns of "work" per step */
    chan_t *heartbeat;  /* long: beat numbers, unbuffered; closed by the worker */
    chan_t *nudge;      /* no values, capacity 1: the monitor's wake-up call */
    chan_t *stop;       /* no values; closed by the monitor to give up */
    chan_t *result;     /* long, capacity 1: the worker's answer */
};

/* Waits for a nudge (0) or for stop to be closed (-EPIPE); 10 s at most. */
static int stall(struct job *j)
{
    chan_case_t cases[] = {
        CHAN_RECV_CASE(j->nudge, NULL),
        CHAN_RECV_CASE(j->stop, NULL),
    };
    int i = chan_select(cases, 2, 10000 * NS_PER_MS);
    if (i == -ETIMEDOUT)
        die("the worker was never nudged", ETIMEDOUT);
    if (i < 0)
        die("chan_select", -i);
    return i == 0 ? 0 : -EPIPE;
}

static void *worker(void *arg)
{
    struct job *j = arg;
    long sum = 0, beat;
    for (beat = 1; beat <= j->beats; beat++) {
        /* One step of work: sleep for an interval, unless told to stop.
         * stop never carries a value, so the only outcomes are the timeout
         * (the normal case) and -EPIPE (stop was closed). */
        int rc = chan_timedrecv(j->stop, NULL, j->interval);
        if (rc == -EPIPE)
            break;
        if (rc != -ETIMEDOUT)
            die("chan_timedrecv", rc < 0 ? -rc : EPROTO);
        sum += beat;

        /* Unbuffered: this returns once the monitor has the beat. */
        rc = chan_send(j->heartbeat, &beat);
        if (rc < 0)
            die("chan_send heartbeat", -rc);

        if (beat == j->stall_at) {
            /* Forget nudges meant for earlier, merely late, beats. */
            rc = chan_tryrecv(j->nudge, NULL);
            if (rc != 0 && rc != -EAGAIN)
                die("chan_tryrecv", -rc);
            if (stall(j) < 0)
                break;
        }
    }
    int rc = chan_close(j->heartbeat);
    if (rc < 0)
        die("chan_close heartbeat", -rc);
    rc = chan_send(j->result, &sum); /* capacity 1: never blocks */
    if (rc < 0)
        die("chan_send result", -rc);
    return NULL;
}

static long arg(int argc, char **argv, int i, long def, long min, long max)
{
    if (i >= argc)
        return def;
    char *end;
    errno = 0;
    long v = strtol(argv[i], &end, 10);
    if (errno != 0 || *end != '\0' || end == argv[i] || v < min || v > max) {
        fprintf(stderr,
                "heartbeat: argument %d must be a number from %ld to %ld\n"
                "usage: heartbeat [BEATS [INTERVAL_MS [STALL_AT]]]\n",
                i, min, max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc > 4) {
        fprintf(stderr, "usage: heartbeat [BEATS [INTERVAL_MS [STALL_AT]]]\n");
        return 2;
    }
    struct job j;
    j.beats = arg(argc, argv, 1, 8, 1, 100000);
    j.interval = arg(argc, argv, 2, 10, 1, 10000) * NS_PER_MS;
    j.stall_at = arg(argc, argv, 3, j.beats < 4 ? j.beats : 4, 0, j.beats);
    j.heartbeat = chan_make(sizeof(long), 0);
    j.nudge = chan_make(0, 1);
    j.stop = chan_make(0, 0);
    j.result = chan_make(sizeof(long), 1);
    if (!j.heartbeat || !j.nudge || !j.stop || !j.result)
        die("chan_make", ENOMEM);

    pthread_t thread;
    int rc = pthread_create(&thread, NULL, worker, &j);
    if (rc != 0)
        die("pthread_create", rc);

    /* The monitor. */
    const int64_t timeout = 5 * j.interval;
    const int max_silent = 3; /* missed heartbeats in a row before giving up */
    long last = 0, beat, sum = 0;
    int silent = 0, gave_up = 0;
    chan_case_t cases[] = {
        CHAN_RECV_CASE(j.heartbeat, &beat),
        CHAN_RECV_CASE(j.result, &sum),
    };
    for (;;) {
        int i = chan_select(cases, 2, timeout);
        if (i == 0 && cases[0].result == 0) {
            if (beat != last + 1)
                die("heartbeat out of order", EPROTO);
            last = beat;
            silent = 0;
            printf("beat %ld\n", beat);
        } else if (i == 0) {
            /* Closed: no more heartbeats.  A closed channel is always
             * ready, so disable the case and wait for the result alone. */
            if (cases[0].result != -EPIPE)
                die("chan_select heartbeat", -cases[0].result);
            cases[0].ch = NULL;
        } else if (i == 1) {
            if (cases[1].result != 0)
                die("chan_select result", -cases[1].result);
            break;
        } else if (i == -ETIMEDOUT && !gave_up) {
            printf("missed heartbeat after beat %ld\n", last);
            if (++silent == max_silent) {
                printf("worker silent, stopping it\n");
                rc = chan_close(j.stop);
                if (rc < 0)
                    die("chan_close stop", -rc);
                gave_up = 1;
            }
            /* Capacity 1: one pending nudge is enough. */
            rc = chan_trysend(j.nudge, NULL);
            if (rc != 0 && rc != -EAGAIN)
                die("chan_trysend nudge", -rc);
        } else if (i != -ETIMEDOUT) {
            die("chan_select", -i);
        }
        /* After giving up, timeouts just mean "keep waiting for the
         * worker to notice stop". */
    }

    rc = pthread_join(thread, NULL);
    if (rc != 0)
        die("pthread_join", rc);
    printf("worker finished: beats=%ld result=%ld\n", last, sum);
    if (fflush(stdout) != 0)
        die("writing the output", EIO);

    chan_release(j.heartbeat);
    chan_release(j.nudge);
    chan_release(j.stop);
    chan_release(j.result);
    return 0;
}
