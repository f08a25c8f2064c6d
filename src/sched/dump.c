/*
 * dump.c - looking at a scheduler from outside: chan_sched_dump (one line
 * per task: its id, its state and what it waits on) and the deadlock
 * monitor of CHAN_DEBUG=deadlock, which writes such a dump when every task
 * has stayed blocked for a second.
 *
 * What is read.  The dump walks sched->all_tasks, every task struct the
 * scheduler ever allocated (task.c): they are freed only by
 * chan_sched_free, so the walk needs no lock and never reads freed
 * memory, whatever tasks start and finish meanwhile.  Of each struct it
 * reads atomics only: id (0: no task), parker.state (PARKED: the task
 * waits), the note (park.h: what it waits on), file and line, and each
 * worker's current task.  Those are written by the tasks and workers with
 * plain (relaxed) stores, so a dump that races with a task changing state
 * may print that task's line half old, half new: a snapshot, not a
 * consistent cut, as any dump of a running program is.  It never follows
 * a pointer out of the struct: the channel a task waits on may be freed
 * the moment the task wakes, so the note holds the channel's element size
 * and capacity, copied when the task parked, and its length follows from
 * the invariants of chan_impl.h (a blocked sender waits on a full buffer,
 * a blocked receiver on an empty one).
 *
 * For how long.  Reading the clock at every park would cost more than
 * the rest of the park's bookkeeping, so the note holds only a park
 * sequence number and the clock is read by the one who looks: the first
 * dump or monitor check that sees a task parked with a given seq stamps
 * seen_seq and seen_at, and later looks print the time since then.  A
 * park nobody looked at before shows 0.000s.  (Go stamps its waitsince
 * lazily too, from the garbage collector.)
 *
 * Locking.  chan_sched_dump takes no lock at all, so it may be called
 * from any thread or task, even with a scheduler's locks held, and may
 * block in write(2) on a pipe that a task of the same scheduler drains.
 * The monitor takes its own mon_mu (a leaf), and alone, one at a time,
 * the timer heap lock and the signal registry lock (src/internal.h).
 *
 * The deadlock monitor.  Started by chan_sched_new when the environment
 * holds CHAN_DEBUG=deadlock (read at every chan_sched_new), a thread that
 * looks every CHECK_MS.  It reports, once per scheduler, when it has seen
 * every task of the scheduler parked in the same park for at least
 * STUCK_MS, each on a channel, a select or a wait group without a
 * deadline, while no channel operation completed anywhere in the process
 * (chan__debug_progress, park.h), no timer was pending (a task waiting
 * for a timer channel, or any task's deadline, will be woken by it) and
 * no signal was watched (a signal may still arrive: Go does not report
 * then either).  The report goes to standard error and changes nothing:
 * a plain thread may still wake the tasks.
 */
#include "internal.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "park.h"
#include "sched/sched.h"
#include "timer.h"

enum {
    CHECK_MS = 200,   /* the monitor's period */
    STUCK_MS = 1000,  /* how long everything must stay blocked */
    LINE_MAX_ = 320,  /* room for one line of the dump */
};

/* ---------------------------------------------------------------- output */

/* Text gathered for write(2), flushed when a line might not fit. */
struct out {
    int fd;
    int err;          /* the first write error, as a negative errno */
    size_t len;
    char buf[4096];
};

static void out_flush(struct out *o)
{
    size_t done = 0;
    while (done < o->len && !o->err) {
        ssize_t n = write(o->fd, o->buf + done, o->len - done);
        if (n > 0)
            done += (size_t)n;
        else if (n < 0 && errno != EINTR)
            o->err = -errno;
        else if (n == 0)
            o->err = -EIO;
    }
    o->len = 0;
}

__attribute__((format(printf, 2, 3)))
static void out_printf(struct out *o, const char *fmt, ...)
{
    if (sizeof o->buf - o->len < LINE_MAX_)
        out_flush(o);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, sizeof o->buf - o->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t room = sizeof o->buf - o->len;
    o->len += (size_t)n < room ? (size_t)n : room - 1;
}

/* ---------------------------------------------------------------- looking */

/*
 * How long t has been parked in the park whose note seq is seq, in ns, as
 * far as earlier looks know; stamps this look if it is the first.
 */
static int64_t parked_for(chan__task_t *t, unsigned seq, int64_t now)
{
    if (atomic_load_explicit(&t->seen_seq, memory_order_acquire) == seq) {
        int64_t at = atomic_load_explicit(&t->seen_at, memory_order_relaxed);
        return now > at ? now - at : 0;
    }
    atomic_store_explicit(&t->seen_at, now, memory_order_relaxed);
    atomic_store_explicit(&t->seen_seq, seq, memory_order_release);
    return 0;
}

/* What one look saw of a task. */
struct seen {
    uint64_t id;
    int state;        /* 0 runnable, 1 running, 2 parked */
    unsigned worker;  /* running: on which worker */
    int kind, timed;
    const void *obj;
    size_t a, b;
    int64_t parked_ns;
    const char *file;
    int line;
};

/* Fills *v from t; returns 0 if t holds no task. */
static int look(chan_sched_t *s, chan__task_t *t, int64_t now, struct seen *v)
{
    v->id = atomic_load_explicit(&t->id, memory_order_acquire);
    if (v->id == 0)
        return 0;
    v->file = atomic_load_explicit(&t->file, memory_order_relaxed);
    v->line = atomic_load_explicit(&t->line, memory_order_relaxed);
    v->state = 0;
    for (unsigned i = 0; i < s->nworkers; i++) {
        if (__atomic_load_n(&s->workers[i].current, __ATOMIC_RELAXED) == t) {
            v->state = 1;
            v->worker = i;
            return 1;
        }
    }
    /* Acquire: pairs with the release of park_commit, so the note read
     * next is at least that of the park that published PARKED. */
    if (atomic_load_explicit(&t->parker.state, memory_order_acquire) !=
        CHAN_PARK_PARKED)
        return 1;
    v->state = 2;
    chan__parker_t *p = &t->parker;
    unsigned seq = atomic_load_explicit(&p->note_seq, memory_order_relaxed);
    v->kind = atomic_load_explicit(&p->note_kind, memory_order_relaxed);
    v->timed = atomic_load_explicit(&p->note_timed, memory_order_relaxed);
    v->obj = atomic_load_explicit(&p->note_obj, memory_order_relaxed);
    v->a = atomic_load_explicit(&p->note_a, memory_order_relaxed);
    v->b = atomic_load_explicit(&p->note_b, memory_order_relaxed);
    v->parked_ns = parked_for(t, seq, now);
    return 1;
}

static void print_task(struct out *o, const struct seen *v)
{
    char what[200], at[160] = "";
    if (v->file)
        snprintf(at, sizeof at, ", started at %s:%d", v->file, v->line);
    if (v->state == 0) {
        out_printf(o, "  task %" PRIu64 " runnable%s\n", v->id, at);
        return;
    }
    if (v->state == 1) {
        out_printf(o, "  task %" PRIu64 " running on worker %u%s\n", v->id,
                   v->worker, at);
        return;
    }
    switch (v->kind) {
    case CHAN_WAIT_SEND:
    case CHAN_WAIT_RECV:
        /* len: a parked sender waits on a full buffer, a parked receiver
         * on an empty one (chan_impl.h). */
        snprintf(what, sizeof what,
                 "%s on channel %p (elem %zu, cap %zu, len %zu)",
                 v->kind == CHAN_WAIT_SEND ? "send" : "recv", v->obj, v->a,
                 v->b, v->kind == CHAN_WAIT_SEND ? v->b : (size_t)0);
        break;
    case CHAN_WAIT_SELECT:
        snprintf(what, sizeof what, "select over %zu cases", v->a);
        break;
    case CHAN_WAIT_SLEEP:
        snprintf(what, sizeof what, "sleep");
        break;
    case CHAN_WAIT_WG:
        snprintf(what, sizeof what, "wait group %p", v->obj);
        break;
    case CHAN_WAIT_BLOCKING:
        snprintf(what, sizeof what, "chan_blocking call");
        break;
    case CHAN_WAIT_FD:
        snprintf(what, sizeof what, "descriptor %d (events 0x%zx)",
                 (int)v->a, v->b);
        break;
    case CHAN_WAIT_SCHED:
        snprintf(what, sizeof what, "chan_sched_wait on scheduler %p",
                 v->obj);
        break;
    default:
        snprintf(what, sizeof what, "unknown wait");
        break;
    }
    out_printf(o, "  task %" PRIu64 " parked %" PRId64 ".%03ds: %s%s%s\n",
               v->id, v->parked_ns / 1000000000,
               (int)(v->parked_ns / 1000000 % 1000), what,
               v->timed && v->kind != CHAN_WAIT_SLEEP ? ", with a deadline"
                                                      : "",
               at);
}

/* The dump proper, after an optional first line; returns 0 or -errno. */
static int dump(chan_sched_t *s, int fd, const char *first)
{
    struct out *o = malloc(sizeof *o);
    if (!o)
        return -ENOMEM;
    o->fd = fd;
    o->err = 0;
    o->len = 0;
    int64_t now = chan__now();
    size_t n = 0;
    for (chan__task_t *t = atomic_load_explicit(&s->all_tasks,
                                                memory_order_acquire);
         t; t = t->all_next)
        if (atomic_load_explicit(&t->id, memory_order_relaxed) != 0)
            n++;
    if (first)
        out_printf(o, "%s", first);
    out_printf(o, "libchan: scheduler %p: %zu tasks, %u workers\n",
               (void *)s, n, s->nworkers);
    for (chan__task_t *t = atomic_load_explicit(&s->all_tasks,
                                                memory_order_acquire);
         t && !o->err; t = t->all_next) {
        struct seen v;
        if (look(s, t, now, &v))
            print_task(o, &v);
    }
    out_flush(o);
    int rc = o->err;
    free(o);
    return rc;
}

int chan_sched_dump(chan_sched_t *s, int fd)
{
    if (!s)
        return -EINVAL;
    int saved_errno = chan__errno_save(); /* write and malloc set it */
    int rc = dump(s, fd, NULL);
    chan__errno_restore(saved_errno);
    return rc;
}

/* ---------------------------------------------------------------- monitor */

/* 1 if CHAN_DEBUG, a comma-separated list, holds "deadlock". */
static int debug_deadlock(void)
{
    const char *e = getenv("CHAN_DEBUG");
    if (!e)
        return 0;
    for (const char *p = e; (p = strstr(p, "deadlock")) != NULL; p += 8)
        if ((p == e || p[-1] == ',') && (p[8] == '\0' || p[8] == ','))
            return 1;
    return 0;
}

/*
 * One check (see the top of the file).  Returns the number of tasks if
 * all of them have been blocked, with no excuse, for STUCK_MS; else 0.
 */
static size_t all_stuck(chan_sched_t *s, int64_t now)
{
    unsigned long p =
        atomic_load_explicit(&chan__debug_progress, memory_order_relaxed);
    if (p != s->mon_progress) {
        s->mon_progress = p;
        s->mon_since = now;
    }
    int stuck = now - s->mon_since >= STUCK_MS * (int64_t)1000000;
    size_t n = 0;
    for (chan__task_t *t = atomic_load_explicit(&s->all_tasks,
                                                memory_order_acquire);
         t; t = t->all_next) {
        struct seen v;
        if (!look(s, t, now, &v))
            continue;
        n++;
        /* Every look stamps, so keep looking after the answer is known. */
        if (v.state != 2 || v.timed ||
            v.parked_ns < STUCK_MS * (int64_t)1000000 ||
            (v.kind != CHAN_WAIT_SEND && v.kind != CHAN_WAIT_RECV &&
             v.kind != CHAN_WAIT_SELECT && v.kind != CHAN_WAIT_WG))
            stuck = 0;
    }
    if (!stuck || n == 0 || chan__timer_pending() || chan__signal_watching())
        return 0;
    return n;
}

static void *monitor(void *arg)
{
    chan__thread_name("chan-monitor");
    chan_sched_t *s = arg;
    s->mon_since = chan__now();
    s->mon_progress =
        atomic_load_explicit(&chan__debug_progress, memory_order_relaxed);
    chan__check(pthread_mutex_lock(&s->mon_mu));
    while (!s->mon_stop) {
        struct timespec ts =
            chan__timespec(chan__now() + CHECK_MS * (int64_t)1000000);
        int e = pthread_cond_timedwait(&s->mon_cv, &s->mon_mu, &ts);
        chan__assert(e == 0 || e == ETIMEDOUT);
        if (s->mon_stop)
            break;
        chan__check(pthread_mutex_unlock(&s->mon_mu));
        size_t n;
        if (!s->mon_reported && (n = all_stuck(s, chan__now())) != 0) {
            char first[160];
            snprintf(first, sizeof first,
                     "libchan: possible deadlock: all %zu tasks of scheduler "
                     "%p are blocked\n",
                     n, (void *)s);
            s->mon_reported = 1;
            (void)dump(s, STDERR_FILENO, first); /* nothing to do if it fails */
        } else if (s->mon_reported) {
            /* Keep stamping parks, for later dumps. */
            (void)all_stuck(s, chan__now());
        }
        chan__check(pthread_mutex_lock(&s->mon_mu));
    }
    chan__check(pthread_mutex_unlock(&s->mon_mu));
    return NULL;
}

int chan__monitor_start(chan_sched_t *s)
{
    if (!debug_deadlock())
        return 0;
    atomic_store_explicit(&chan__debug_deadlock, 1, memory_order_relaxed);
    /* Joinable, so that chan_sched_free knows it is gone; with every
     * signal blocked, so that it steals none from the program. */
    sigset_t all, old;
    sigfillset(&all);
    chan__check(pthread_sigmask(SIG_SETMASK, &all, &old));
    int e = pthread_create(&s->mon_thread, NULL, monitor, s);
    chan__check(pthread_sigmask(SIG_SETMASK, &old, NULL));
    if (e != 0)
        return -EAGAIN;
    s->mon_started = 1;
    return 0;
}

void chan__monitor_stop(chan_sched_t *s)
{
    if (!s->mon_started)
        return;
    chan__check(pthread_mutex_lock(&s->mon_mu));
    s->mon_stop = 1;
    chan__check(pthread_cond_signal(&s->mon_cv));
    chan__check(pthread_mutex_unlock(&s->mon_mu));
    chan__check(pthread_join(s->mon_thread, NULL));
    s->mon_started = 0;
}
