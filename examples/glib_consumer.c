/*
 * glib_consumer.c - a GLib main loop consuming a channel fed by worker
 * threads, through chan_pollfd and g_unix_fd_add.
 *
 *   usage: glib_consumer [PRODUCERS [ITEMS [CAPACITY]]]
 *          (defaults: 4 producer threads, 1000 items each, unbuffered)
 *
 * What it shows:
 *  - chan_pollfd(ch, POLLIN) as a GLib source: the descriptor is readable
 *    while a receive would not block, here mostly because a producer
 *    thread is blocked in chan_send on the unbuffered channel;
 *  - the level-triggered rule: on each callback, chan_tryrecv until
 *    -EAGAIN (or -EPIPE);
 *  - a quit channel: the last producer to finish closes "quit", whose
 *    descriptor wakes the loop, which takes what is left and quits.
 *
 * Producer p sends p*ITEMS+1 .. (p+1)*ITEMS.  The loop checks that no value
 * comes twice and prints one line, for example:
 *
 *   glib_consumer: producers=4 items=1000 count=4000 sum=8002000 ok
 *
 * Any failure prints a message and exits with status 1.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <chan.h>
#include <glib-unix.h>
#include <glib.h>

static void die(const char *what, int err)
{
    fprintf(stderr, "glib_consumer: %s: %s\n", what, strerror(err));
    exit(1);
}

struct app {
    chan_t *values;          /* long: what the producers send */
    chan_t *quit;            /* no values; closed by the last producer */
    atomic_long running;     /* producers not done yet */
    long producers, items;
    unsigned char *seen;     /* seen[v - 1]: value v arrived */
    long count;
    long long sum;
    int dup;                 /* a value arrived twice */
    GMainLoop *loop;
};

struct producer {
    struct app *app;
    long first;              /* the first value it sends */
    pthread_t th;
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    struct app *a = p->app;
    for (long i = 0; i < a->items; i++) {
        long v = p->first + i;
        if (chan_send(a->values, &v) != 0)
            die("chan_send", EPIPE);
    }
    if (atomic_fetch_sub(&a->running, 1) == 1)
        chan_close(a->quit); /* the last one: every send has completed */
    return NULL;
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

static gboolean on_values(gint fd, GIOCondition cond, gpointer data)
{
    drain(data);
    return G_SOURCE_CONTINUE;
}

static gboolean on_quit(gint fd, GIOCondition cond, gpointer data)
{
    struct app *a = data;
    drain(a);
    g_main_loop_quit(a->loop);
    return G_SOURCE_REMOVE;
}

static long arg(int argc, char **argv, int i, long def, long min, long max)
{
    if (argc <= i)
        return def;
    char *end;
    errno = 0;
    long v = strtol(argv[i], &end, 10);
    if (errno || end == argv[i] || *end || v < min || v > max) {
        fprintf(stderr,
                "usage: glib_consumer [PRODUCERS [ITEMS [CAPACITY]]]\n");
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    struct app a = { 0 };
    a.producers = arg(argc, argv, 1, 4, 1, 1000);
    a.items = arg(argc, argv, 2, 1000, 0, 1000000);
    long cap = arg(argc, argv, 3, 0, 0, 1 << 20);
    long total = a.producers * a.items;

    a.values = chan_make(sizeof(long), (size_t)cap);
    a.quit = chan_make(0, 0);
    a.seen = calloc((size_t)total + 1, 1);
    struct producer *p = calloc((size_t)a.producers, sizeof *p);
    if (!a.values || !a.quit || !a.seen || !p)
        die("setup", ENOMEM);
    int vfd = chan_pollfd(a.values, POLLIN);
    int qfd = chan_pollfd(a.quit, POLLIN);
    if (vfd < 0)
        die("chan_pollfd", -vfd);
    if (qfd < 0)
        die("chan_pollfd", -qfd);

    a.loop = g_main_loop_new(NULL, FALSE);
    guint vsrc = g_unix_fd_add(vfd, G_IO_IN, on_values, &a);
    g_unix_fd_add(qfd, G_IO_IN, on_quit, &a);

    atomic_store(&a.running, a.producers);
    for (long i = 0; i < a.producers; i++) {
        p[i] = (struct producer){ &a, i * a.items + 1, 0 };
        int e = pthread_create(&p[i].th, NULL, produce, &p[i]);
        if (e)
            die("pthread_create", e);
    }

    g_main_loop_run(a.loop); /* until on_quit */
    g_source_remove(vsrc);
    g_main_loop_unref(a.loop);
    for (long i = 0; i < a.producers; i++)
        pthread_join(p[i].th, NULL);

    int ok = !a.dup && a.count == total;
    printf("glib_consumer: producers=%ld items=%ld count=%ld sum=%lld %s\n",
           a.producers, a.items, a.count, a.sum, ok ? "ok" : "MISMATCH");
    free(p);
    free(a.seen);
    chan_release(a.values); /* closes its descriptor */
    chan_release(a.quit);
    return ok ? 0 : 1;
}
