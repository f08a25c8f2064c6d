/*
 * uv_consumer.c - a libuv event loop consuming a channel fed by scheduler
 * tasks, through chan_pollfd and uv_poll_t.
 *
 *   usage: uv_consumer [PRODUCERS [ITEMS [CAPACITY]]]
 *          (defaults: 4 producer tasks, 1000 items each, capacity 16)
 *
 * What it shows:
 *  - chan_pollfd(ch, POLLIN) gives a descriptor that libuv can watch like
 *    a socket: it is readable while a receive would not block;
 *  - the rule for level-triggered readiness: on each callback, call
 *    chan_tryrecv until it returns -EAGAIN (or -EPIPE);
 *  - a quit channel: when every producer is done, a closer task closes
 *    "quit", whose descriptor wakes the loop, which takes what is left and
 *    stops its handles, so that uv_run returns.
 *
 * Producer p sends p*ITEMS+1 .. (p+1)*ITEMS.  The loop checks that no value
 * comes twice and prints one line, for example:
 *
 *   uv_consumer: producers=4 items=1000 count=4000 sum=8002000 ok
 *
 * Any failure prints a message and exits with status 1.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chan.h>
#include <uv.h>

static void die(const char *what, int err)
{
    fprintf(stderr, "uv_consumer: %s: %s\n", what, strerror(err));
    exit(1);
}

struct app {
    chan_t *values;          /* long: what the producers send */
    chan_t *quit;            /* no values; closed when the producers are done */
    chan_wg_t *wg;           /* one count per producer */
    long producers, items;
    unsigned char *seen;     /* seen[v - 1]: value v arrived */
    long count;
    long long sum;
    int dup;                 /* a value arrived twice */
    uv_poll_t values_h, quit_h;
};

struct producer {
    struct app *app;
    long first;              /* the first value it sends */
};

static void produce(void *arg)
{
    struct producer *p = arg;
    for (long i = 0; i < p->app->items; i++) {
        long v = p->first + i;
        if (chan_send(p->app->values, &v) != 0)
            die("chan_send", EPIPE);
        if (i % 64 == 63)
            chan_yield();
    }
    chan_wg_done(p->app->wg);
}

static void closer(void *arg)
{
    struct app *a = arg;
    chan_wg_wait(a->wg);
    chan_close(a->quit);
}

/* Takes every value that is ready now: the level-triggered rule. */
static void drain(struct app *a)
{
    long v;
    int rc;
    while ((rc = chan_tryrecv(a->values, &v)) == 0) {
        long total = a->producers * a->items;
        if (v < 1 || v > total || a->seen[v - 1]++)
            a->dup = 1;
        a->count++;
        a->sum += v;
    }
    if (rc != -EAGAIN)
        die("chan_tryrecv", -rc);
}

static void on_values(uv_poll_t *h, int status, int events)
{
    if (status < 0) {
        fprintf(stderr, "uv_consumer: poll: %s\n", uv_strerror(status));
        exit(1);
    }
    drain(h->data);
}

static void on_quit(uv_poll_t *h, int status, int events)
{
    struct app *a = h->data;
    /* Every send completed before quit was closed: this takes the rest. */
    drain(a);
    uv_poll_stop(&a->values_h);
    uv_poll_stop(&a->quit_h);
    uv_close((uv_handle_t *)&a->values_h, NULL);
    uv_close((uv_handle_t *)&a->quit_h, NULL);
}

static long arg(int argc, char **argv, int i, long def, long min, long max)
{
    if (argc <= i)
        return def;
    char *end;
    errno = 0;
    long v = strtol(argv[i], &end, 10);
    if (errno || end == argv[i] || *end || v < min || v > max) {
        fprintf(stderr, "usage: uv_consumer [PRODUCERS [ITEMS [CAPACITY]]]\n");
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    struct app a = { 0 };
    a.producers = arg(argc, argv, 1, 4, 1, 1000);
    a.items = arg(argc, argv, 2, 1000, 0, 1000000);
    long cap = arg(argc, argv, 3, 16, 0, 1 << 20);
    long total = a.producers * a.items;

    a.values = chan_make(sizeof(long), (size_t)cap);
    a.quit = chan_make(0, 0);
    a.wg = chan_wg_new();
    a.seen = calloc((size_t)total + 1, 1);
    chan_sched_t *s = chan_sched_new(NULL);
    if (!a.values || !a.quit || !a.wg || !a.seen || !s)
        die("setup", ENOMEM);
    int vfd = chan_pollfd(a.values, POLLIN);
    int qfd = chan_pollfd(a.quit, POLLIN);
    if (vfd < 0)
        die("chan_pollfd", -vfd);
    if (qfd < 0)
        die("chan_pollfd", -qfd);

    uv_loop_t *loop = uv_default_loop();
    int e;
    if ((e = uv_poll_init(loop, &a.values_h, vfd)) < 0 ||
        (e = uv_poll_init(loop, &a.quit_h, qfd)) < 0) {
        fprintf(stderr, "uv_consumer: uv_poll_init: %s\n", uv_strerror(e));
        return 1;
    }
    a.values_h.data = a.quit_h.data = &a;
    uv_poll_start(&a.values_h, UV_READABLE, on_values);
    uv_poll_start(&a.quit_h, UV_READABLE, on_quit);

    struct producer *p = calloc((size_t)a.producers, sizeof *p);
    if (!p)
        die("setup", ENOMEM);
    chan_wg_add(a.wg, (int)a.producers);
    for (long i = 0; i < a.producers; i++) {
        p[i] = (struct producer){ &a, i * a.items + 1 };
        if ((e = chan_go(s, produce, &p[i])) != 0)
            die("chan_go", -e);
    }
    if ((e = chan_go(s, closer, &a)) != 0)
        die("chan_go", -e);

    uv_run(loop, UV_RUN_DEFAULT); /* until on_quit closed both handles */
    uv_loop_close(loop);
    chan_sched_free(s);

    int ok = !a.dup && a.count == total;
    printf("uv_consumer: producers=%ld items=%ld count=%ld sum=%lld %s\n",
           a.producers, a.items, a.count, a.sum, ok ? "ok" : "MISMATCH");
    free(p);
    free(a.seen);
    chan_wg_free(a.wg);
    chan_release(a.values); /* closes its descriptor */
    chan_release(a.quit);
    return ok ? 0 : 1;
}
