/*
 * shutdown.c - a server-style loop that shuts down gracefully on SIGINT or
 * SIGTERM.
 *
 *   usage: shutdown [SELF_SIGNAL_AFTER [INT|TERM]]
 *
 * Without arguments it serves until you press Ctrl-C or send it SIGTERM.
 * With SELF_SIGNAL_AFTER = N it sends itself SIGTERM (or SIGINT) once it
 * has handled N requests, which is how the test suite drives it.
 *
 * What it shows:
 *  - chan_signal_notify: SIGINT and SIGTERM arrive as values on a buffered
 *    channel instead of running code in a signal handler, like Go's
 *    signal.Notify(c, os.Interrupt, syscall.SIGTERM);
 *  - one select over three kinds of event: a signal, a request on the work
 *    channel, and an idle timeout from chan_after (Go's
 *    "case <-time.After(d):"), made afresh each time round the loop;
 *  - a graceful stop: on the signal, close a quit channel (a broadcast),
 *    finish the requests already accepted, join the producer, and restore
 *    the signals' old dispositions with chan_signal_stop;
 *  - a chan_tick paces the request producer, one request per millisecond.
 *
 * Output, for example for "shutdown 5":
 *
 *   serving
 *   received SIGTERM: shutting down
 *   handled 5 requests (last 5), drained 0
 *   bye
 *
 * (more than 5 requests may be handled before the signal is seen: the
 * signal travels through the library's relay thread while requests keep
 * coming).  If no signal comes within 60 s it gives up with status 1.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chan.h>

#define MS ((int64_t)1000000)

static void die(const char *what, int err)
{
    fprintf(stderr, "shutdown: %s: %s\n", what, strerror(err));
    exit(1);
}

struct server {
    chan_t *requests;  /* long: request numbers; closed by the producer */
    chan_t *quit;      /* no values; closed by main to stop the producer */
};

/* Makes a request every millisecond until quit is closed. */
static void *producer(void *arg)
{
    struct server *s = arg;
    chan_t *tick = chan_tick(1 * MS);
    if (!tick)
        die("chan_tick", ENOMEM);
    for (long n = 1;; n++) {
        chan_case_t wait[] = {
            CHAN_RECV_CASE(tick, NULL),
            CHAN_RECV_CASE(s->quit, NULL),
        };
        int i = chan_select(wait, 2, CHAN_FOREVER);
        if (i < 0)
            die("chan_select", -i);
        if (i == 1)
            break;
        chan_case_t send[] = {
            CHAN_SEND_CASE(s->requests, &n),
            CHAN_RECV_CASE(s->quit, NULL),
        };
        i = chan_select(send, 2, CHAN_FOREVER);
        if (i < 0)
            die("chan_select", -i);
        if (i == 1)
            break;
    }
    chan_release(tick); /* also stops the ticker */
    int rc = chan_close(s->requests);
    if (rc != 0)
        die("close requests", -rc);
    return NULL;
}

static long parse(const char *str)
{
    char *end;
    errno = 0;
    long v = strtol(str, &end, 10);
    if (errno || end == str || *end || v < 1 || v > 1000000) {
        fprintf(stderr, "usage: shutdown [SELF_SIGNAL_AFTER [INT|TERM]]\n");
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    long self_signal_after = 0;
    int self_signal = SIGTERM;
    if (argc > 3 || (argc > 1 && (self_signal_after = parse(argv[1])) == 0)) {
        fprintf(stderr, "usage: shutdown [SELF_SIGNAL_AFTER [INT|TERM]]\n");
        return 2;
    }
    if (argc > 2) {
        if (strcmp(argv[2], "INT") == 0) {
            self_signal = SIGINT;
        } else if (strcmp(argv[2], "TERM") != 0) {
            fprintf(stderr, "usage: shutdown [SELF_SIGNAL_AFTER [INT|TERM]]\n");
            return 2;
        }
    }

    /* A buffer, so that a signal arriving while we are busy is kept. */
    chan_t *sigs = chan_make(sizeof(int), 2);
    struct server s = { chan_make(sizeof(long), 8), chan_make(0, 0) };
    if (!sigs || !s.requests || !s.quit)
        die("chan_make", ENOMEM);
    int rc;
    if ((rc = chan_signal_notify(sigs, SIGINT)) != 0 ||
        (rc = chan_signal_notify(sigs, SIGTERM)) != 0)
        die("chan_signal_notify", -rc);

    pthread_t prod;
    if ((rc = pthread_create(&prod, NULL, producer, &s)) != 0)
        die("pthread_create", rc);
    printf("serving\n");
    fflush(stdout);

    /* Gives up if no signal comes at all: the test must not hang. */
    chan_t *deadline = chan_after(60000 * MS);
    if (!deadline)
        die("chan_after", ENOMEM);

    long handled = 0, last = 0;
    int signo = 0;
    while (!signo) {
        chan_t *idle = chan_after(500 * MS);
        if (!idle)
            die("chan_after", ENOMEM);
        long req;
        chan_case_t cases[] = {
            CHAN_RECV_CASE(sigs, &signo),
            CHAN_RECV_CASE(s.requests, &req),
            CHAN_RECV_CASE(idle, NULL),
            CHAN_RECV_CASE(deadline, NULL),
        };
        int i = chan_select(cases, 4, CHAN_FOREVER);
        chan_release(idle); /* releasing stops it if it has not fired */
        if (i < 0)
            die("chan_select", -i);
        switch (i) {
        case 0:
            break; /* signo is set: leave the loop */
        case 1:
            if (cases[1].result != 0)
                die("requests closed early", EPIPE);
            handled++;
            last = req;
            if (handled == self_signal_after && kill(getpid(), self_signal))
                die("kill", errno);
            break;
        case 2:
            printf("idle for 500 ms\n");
            break;
        case 3:
            fprintf(stderr, "shutdown: no signal within 60 s, giving up\n");
            return 1;
        }
    }
    printf("received %s: shutting down\n",
           signo == SIGINT ? "SIGINT" : signo == SIGTERM ? "SIGTERM" : "?");

    /* Graceful: stop taking new work, finish what was already accepted
     * (the requests buffered in the channel), then clean up. */
    if ((rc = chan_close(s.quit)) != 0)
        die("close quit", -rc);
    long drained = 0, req;
    while ((rc = chan_recv(s.requests, &req)) == 0) {
        drained++;
        last = req;
    }
    if (rc != -EPIPE)
        die("drain requests", -rc);
    pthread_join(prod, NULL);
    printf("handled %ld requests (last %ld), drained %ld\n", handled, last,
           drained);

    /* The old dispositions come back: a second Ctrl-C now kills. */
    chan_signal_stop(sigs);
    chan_release(sigs);
    chan_release(deadline);
    chan_release(s.requests);
    chan_release(s.quit);
    printf("bye\n");
    return 0;
}
