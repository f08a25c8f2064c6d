/*
 * timer.c - the library's one timer thread and its binary min-heap of
 * deadlines (the interface and its rules are in timer.h).
 *
 * Invariants (with heap_mu held):
 *   - heap[0 .. n-1] is a binary min-heap on ->when: for every i > 0,
 *     heap[(i-1)/2]->when <= heap[i]->when.
 *   - t->slot == i + 1 exactly when heap[i] == t; 0 when t is not pending.
 *     This is what makes chan__timer_cancel() O(log n): it finds its entry
 *     without a search.
 *   - A periodic timer stays on the heap while it fires: its deadline is
 *     moved forward (skipping missed periods, so a late thread causes no
 *     burst) and sifted down before fire() runs.  A one-shot timer leaves
 *     the heap before fire() runs.
 *
 * Locking.  heap_mu guards heap, n, cap, started and the slot and when of
 * every pending timer.  It is first in the lock order (src/internal.h):
 * fire() runs with it held and may take a channel lock; nothing here takes
 * heap_mu while holding a channel lock.  Because fire() runs under heap_mu,
 * taking heap_mu in chan__timer_cancel() waits out a fire() in progress:
 * that is the guarantee that the timer may be freed on return.
 *
 * Threads.  The timer thread is created on the first chan__timer_start(),
 * detached and with every signal blocked, so it neither keeps the process
 * from exiting nor steals signals meant for the application's threads.
 * It sleeps on a CLOCK_MONOTONIC condition variable until the earliest
 * deadline or until a new earliest deadline is inserted.
 *
 * fork().  The child of a fork has no timer thread (fork copies only the
 * calling thread).  The atfork handlers keep heap_mu consistent across the
 * fork; in the child the thread is started again by the next
 * chan__timer_start(), and timers still pending fire from then on.  (The
 * child handler does not start a thread itself: only async-signal-safe work
 * belongs between fork() and exec().)
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"
#include "timer.h"

/* Smallest heap array kept allocated once the heap has grown. */
enum { HEAP_MIN_CAP = 64 };

static pthread_mutex_t heap_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t heap_cv;          /* CLOCK_MONOTONIC; init_once() */
static chan__timer_t **heap;            /* heap_mu */
static size_t n;                        /* entries in heap; heap_mu */
static size_t cap;                      /* entries allocated; heap_mu */
static int started;                     /* timer thread running; heap_mu */
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void set_slot(size_t i, chan__timer_t *t)
{
    heap[i] = t;
    t->slot = i + 1;
}

/* Moves the entry at i towards the root while it is earlier than its
 * parent. */
static void sift_up(size_t i)
{
    chan__timer_t *t = heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent]->when <= t->when)
            break;
        set_slot(i, heap[parent]);
        i = parent;
    }
    set_slot(i, t);
}

/* Moves the entry at i towards the leaves while a child is earlier. */
static void sift_down(size_t i)
{
    chan__timer_t *t = heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= n)
            break;
        if (child + 1 < n && heap[child + 1]->when < heap[child]->when)
            child++;
        if (t->when <= heap[child]->when)
            break;
        set_slot(i, heap[child]);
        i = child;
    }
    set_slot(i, t);
}

/* Removes the entry at slot index i.  heap_mu held. */
static void heap_remove(size_t i)
{
    chan__timer_t *t = heap[i];
    t->slot = 0;
    n--;
    if (i != n) {
        set_slot(i, heap[n]);
        /* The moved entry may belong above or below its new place. */
        if (i > 0 && heap[(i - 1) / 2]->when > heap[i]->when)
            sift_up(i);
        else
            sift_down(i);
    }
    heap[n] = NULL;
    /* Give memory back after a burst of timers, with hysteresis so that a
     * heap hovering around a power of two does not reallocate each time. */
    if (cap > HEAP_MIN_CAP && n < cap / 4) {
        chan__timer_t **smaller = realloc(heap, cap / 2 * sizeof *heap);
        if (smaller) {
            heap = smaller;
            cap /= 2;
        }
    }
}

/* The next deadline of a periodic timer that fired at now: the first
 * when + k * period (k >= 1) after now, so missed periods are skipped. */
static int64_t next_period(const chan__timer_t *t, int64_t now)
{
    if (t->period > INT64_MAX - now)
        return INT64_MAX;
    int64_t behind = now > t->when ? now - t->when : 0;
    /* k * period <= behind + period, and when + behind + period ==
     * max(now, when) + period, which was checked above not to overflow. */
    int64_t k = behind / t->period + 1;
    return t->when + k * t->period;
}

static void *timer_thread(void *arg)
{
    (void)arg;
    chan__check(pthread_mutex_lock(&heap_mu));
    for (;;) {
        if (n == 0) {
            chan__check(pthread_cond_wait(&heap_cv, &heap_mu));
            continue;
        }
        chan__timer_t *t = heap[0];
        int64_t now = chan__now();
        if (t->when > now) {
            if (t->when == INT64_MAX) {
                chan__check(pthread_cond_wait(&heap_cv, &heap_mu));
            } else {
                struct timespec ts = chan__timespec(t->when);
                int e = pthread_cond_timedwait(&heap_cv, &heap_mu, &ts);
                chan__assert(e == 0 || e == ETIMEDOUT);
            }
            /* Whatever woke us, the heap may have changed: look again. */
            continue;
        }
        if (t->period > 0) {
            t->when = next_period(t, now);
            sift_down(0);
        } else {
            heap_remove(0);
        }
        t->fire(t, now);
    }
    return NULL;
}

/* atfork handlers: no thread may hold heap_mu across fork(). */
static void before_fork(void)
{
    chan__check(pthread_mutex_lock(&heap_mu));
}

static void after_fork_parent(void)
{
    chan__check(pthread_mutex_unlock(&heap_mu));
}

static void cond_init(void)
{
    pthread_condattr_t attr;
    chan__check(pthread_condattr_init(&attr));
    chan__check(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC));
    chan__check(pthread_cond_init(&heap_cv, &attr));
    pthread_condattr_destroy(&attr);
}

static void after_fork_child(void)
{
    /* The parent's timer thread may have been waiting on heap_cv; in the
     * child that waiter does not exist, so start with a fresh one. */
    cond_init();
    started = 0;
    chan__check(pthread_mutex_unlock(&heap_mu));
}

static void init_once(void)
{
    cond_init();
    chan__check(pthread_atfork(before_fork, after_fork_parent,
                               after_fork_child));
}

/* Starts the timer thread, detached, with all signals blocked.  heap_mu
 * held.  Returns 0 or -ENOMEM. */
static int start_thread(void)
{
    int rc = chan__thread_start_quiet(timer_thread, NULL);
    if (rc < 0)
        return rc;
    started = 1;
    return 0;
}

int chan__timer_start(chan__timer_t *t)
{
    chan__assert(t->slot == 0 && t->fire);
    chan__check(pthread_once(&once, init_once));
    chan__check(pthread_mutex_lock(&heap_mu));
    int rc = 0;
    if (!started && (rc = start_thread()) < 0)
        goto out;
    if (n == cap) {
        size_t ncap = cap ? 2 * cap : HEAP_MIN_CAP;
        chan__timer_t **bigger =
            ncap > SIZE_MAX / sizeof *heap ? NULL
                                           : realloc(heap, ncap * sizeof *heap);
        if (!bigger) {
            rc = -ENOMEM;
            goto out;
        }
        heap = bigger;
        cap = ncap;
    }
    heap[n] = t;
    sift_up(n++);
    /* A new earliest deadline: the thread may be sleeping until a later
     * one. */
    if (t->slot == 1)
        chan__check(pthread_cond_signal(&heap_cv));
out:
    chan__check(pthread_mutex_unlock(&heap_mu));
    return rc;
}

int chan__timer_cancel(chan__timer_t *t)
{
    /* heap_mu is statically initialised, so this works even if no timer
     * was ever started. */
    chan__check(pthread_mutex_lock(&heap_mu));
    int was_pending = t->slot != 0;
    if (was_pending) {
        chan__assert(t->slot <= n && heap[t->slot - 1] == t);
        /* The thread may now sleep until a deadline that is gone; it
         * wakes, finds the heap changed, and sleeps again.  Not worth a
         * signal. */
        heap_remove(t->slot - 1);
    }
    chan__check(pthread_mutex_unlock(&heap_mu));
    return was_pending;
}
