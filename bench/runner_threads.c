/*
 * runner_threads.c - the "threads" runner: every body is a pthread of its
 * own, joined by wait().  Only the main thread calls go() and wait(), so
 * the list of started threads needs no lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "workloads.h"

struct body {
    void (*fn)(void *);
    void *arg;
};

struct threads {
    size_t n, cap;
    pthread_t *th;
    struct body **bodies;
};

static void *trampoline(void *p)
{
    struct body b = *(struct body *)p;
    b.fn(b.arg);
    return NULL;
}

static void *detached_trampoline(void *p)
{
    struct body b = *(struct body *)p;
    free(p);
    b.fn(b.arg);
    return NULL;
}

/*
 * Starts a thread running b: joinable into *th, or detached (th NULL, and
 * the thread frees b); stack_hint as in bench_runner.go.  0 or -errno.
 */
static int start(struct body *b, pthread_t *th, size_t stack_hint)
{
    pthread_attr_t at;
    pthread_t detached;
    int rc = pthread_attr_init(&at);
    if (rc != 0)
        return -rc;
    if (stack_hint) {
        /* Not below the system's minimum (128 KiB on AArch64). */
        long min = sysconf(_SC_THREAD_STACK_MIN);
        rc = pthread_attr_setstacksize(
            &at, min > 0 && stack_hint < (size_t)min ? (size_t)min : stack_hint);
    }
    if (rc == 0 && !th)
        rc = pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (rc == 0)
        rc = pthread_create(th ? th : &detached, &at,
                            th ? trampoline : detached_trampoline, b);
    pthread_attr_destroy(&at);
    return -rc;
}

static int threads_go(struct bench_runner *r, void (*fn)(void *), void *arg,
                      size_t stack_hint)
{
    struct threads *t = r->impl_data;
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        pthread_t *th = realloc(t->th, cap * sizeof *th);
        if (!th)
            return -ENOMEM;
        t->th = th;
        struct body **bodies = realloc(t->bodies, cap * sizeof *bodies);
        if (!bodies)
            return -ENOMEM;
        t->bodies = bodies;
        t->cap = cap;
    }
    struct body *b = malloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    b->fn = fn;
    b->arg = arg;
    int rc = start(b, &t->th[t->n], stack_hint);
    if (rc != 0) {
        free(b);
        return rc;
    }
    t->bodies[t->n++] = b;
    return 0;
}

/* A detached thread: the body that starts it waits for it by other means. */
static int threads_go_inner(struct bench_runner *r, void (*fn)(void *),
                            void *arg)
{
    (void)r;
    struct body *b = malloc(sizeof *b);
    if (!b)
        return -ENOMEM;
    b->fn = fn;
    b->arg = arg;
    int rc = start(b, NULL, 0);
    if (rc != 0)
        free(b);
    return rc;
}

static int threads_wait(struct bench_runner *r)
{
    struct threads *t = r->impl_data;
    int err = 0;
    for (size_t i = 0; i < t->n; i++) {
        int rc = pthread_join(t->th[i], NULL);
        if (rc != 0 && err == 0)
            err = -rc;
        free(t->bodies[i]);
    }
    t->n = 0;
    return err;
}

static struct threads threads_data;

static struct bench_runner threads_runner = {
    .impl = "libchan-threads",
    .go = threads_go,
    .wait = threads_wait,
    .go_inner = threads_go_inner,
    .own_thread = 1,
    .impl_data = &threads_data,
};

struct bench_runner *bench_runner_get(void)
{
    return &threads_runner;
}
