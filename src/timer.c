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
 *   - A one-shot timer leaves the heap before fire() runs.  A periodic
 *     timer stays at heap[0] while it fires (fire() does not touch the
 *     heap); then its deadline moves to the first when + k * period after
 *     the time it fired (skipping missed periods, so a late thread causes
 *     no burst), or later if fire() missed (see rearm()), and it is sifted
 *     down.
 *   - The thread works in passes: a pass fires the timers due at the time
 *     it started (pass_start), earliest first, and a new pass starts only
 *     when none of them is left.  A periodic timer moves past the time it
 *     fired, hence past pass_start, so it fires at most once per pass and
 *     every pass ends, however short its period.
 *
 * Locking.  heap_mu guards heap, n, cap, started, handoff and the slot,
 * when, missed and backoff of every pending timer.  It is first in the
 * lock order (src/internal.h): fire() runs with it held and may take a
 * channel lock; nothing here takes heap_mu while holding a channel lock.
 * Because fire() runs under heap_mu, taking heap_mu in chan__timer_cancel()
 * waits out a fire() in progress: that is the guarantee that the timer may
 * be freed on return.
 *
 * Handing the lock over.  A mutex is not fair: a thread that unlocks and
 * locks again at once nearly always wins against a waiter, which must
 * first be woken.  So the other threads take heap_mu through heap_lock(),
 * which counts them in contenders while they wait, and after each fire()
 * the timer thread looks at that count: when someone waits, it sets
 * handoff and sleeps on turn_cv, which releases heap_mu, until the next
 * holder's heap_unlock() clears handoff and wakes it.  A counted thread is
 * on its way to take heap_mu, so that holder comes.  Contenders are
 * counted only after a failed trylock, so an uncontended lock costs no
 * more than before.
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
 * chan__timer_start() or chan__timer_reset(), and timers still pending fire
 * from then on.  (The child handler does not start a thread itself: only
 * async-signal-safe work belongs between fork() and exec().)
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"
#include "timer.h"

/* Smallest heap array kept allocated once the heap has grown. */
enum { HEAP_MIN_CAP = 64 };

/*
 * How far a periodic timer that keeps missing may put its next poll off:
 * its period, or 1 ms if that is longer.  A ticker nobody receives from
 * then costs at most about a thousand firings a second, and the first tick
 * after the receiver comes back is late by at most about as long as the
 * receiver had left the previous one waiting, and never by more than this.
 */
#define BACKOFF_MAX_NS ((int64_t)1000000)

static pthread_mutex_t heap_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t heap_cv;          /* CLOCK_MONOTONIC; init_once() */
static pthread_cond_t turn_cv;          /* the timer thread waits for handoff */
static chan__timer_t **heap;            /* heap_mu */
static size_t n;                        /* entries in heap; heap_mu */
static size_t cap;                      /* entries allocated; heap_mu */
static int started;                     /* timer thread running; heap_mu */
static int handoff;                     /* timer thread waits; heap_mu */
/* Threads other than the timer thread waiting in heap_lock(). */
static atomic_uint contenders;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* ---------------------------------------------------------------- lock */

/* heap_mu for every thread but the timer thread (see the top). */
static void heap_lock(void)
{
    if (pthread_mutex_trylock(&heap_mu) == 0)
        return;
    /* Relaxed is enough: the timer thread reads the count under heap_mu,
     * and our decrement happens before our unlock, so it never sees a
     * contender that has come and gone. */
    atomic_fetch_add_explicit(&contenders, 1, memory_order_relaxed);
    chan__check(pthread_mutex_lock(&heap_mu));
    atomic_fetch_sub_explicit(&contenders, 1, memory_order_relaxed);
}

static void heap_unlock(void)
{
    if (handoff) {
        handoff = 0;
        chan__check(pthread_cond_signal(&turn_cv));
    }
    chan__check(pthread_mutex_unlock(&heap_mu));
}

/* Timer thread, heap_mu held: let the threads waiting for heap_mu in. */
static void let_contenders_in(void)
{
    if (atomic_load_explicit(&contenders, memory_order_relaxed) == 0)
        return;
    handoff = 1;
    while (handoff)
        chan__check(pthread_cond_wait(&turn_cv, &heap_mu));
}

/* ---------------------------------------------------------------- heap */

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

/* Makes room for one more entry.  heap_mu held.  Returns 0 or -ENOMEM. */
static int heap_grow(void)
{
    if (n < cap)
        return 0;
    size_t ncap = cap ? 2 * cap : HEAP_MIN_CAP;
    int saved = chan__errno_save();
    chan__timer_t **bigger =
        ncap > SIZE_MAX / sizeof *heap ? NULL
                                       : realloc(heap, ncap * sizeof *heap);
    chan__errno_restore(saved);
    if (!bigger)
        return -ENOMEM;
    heap = bigger;
    cap = ncap;
    return 0;
}

/* Adds t (not pending; room made by heap_grow()).  heap_mu held. */
static void heap_insert(chan__timer_t *t)
{
    chan__assert(t->slot == 0 && n < cap);
    heap[n] = t;
    sift_up(n++);
    /* A new earliest deadline: the thread may be sleeping until a later
     * one. */
    if (t->slot == 1)
        chan__check(pthread_cond_signal(&heap_cv));
}

/* Removes the entry at slot index i.  heap_mu held.  Leaves room for at
 * least one more entry. */
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
     * heap hovering around a power of two does not reallocate each time.
     * (n < cap / 4 keeps room for the caller to put an entry back.) */
    if (cap > HEAP_MIN_CAP && n < cap / 4) {
        int saved = chan__errno_save();
        chan__timer_t **smaller = realloc(heap, cap / 2 * sizeof *heap);
        chan__errno_restore(saved);
        if (smaller) {
            heap = smaller;
            cap /= 2;
        }
    }
}

/* ---------------------------------------------------------------- thread */

/* The first when + k * period (k >= 1) after x, saturating: the next
 * deadline of periodic timer t on its own grid of periods. */
static int64_t next_after(const chan__timer_t *t, int64_t x)
{
    if (x < t->when)
        x = t->when;
    if (t->period > INT64_MAX - x)
        return INT64_MAX;
    /* k * period <= (x - when) + period, so when + k * period <= x +
     * period, which was checked above not to overflow.  (Deadlines are
     * CLOCK_MONOTONIC times, never negative, so x - when does not
     * overflow either.) */
    int64_t k = (x - t->when) / t->period + 1;
    return t->when + k * t->period;
}

/*
 * The next deadline of periodic timer t, which fired at now.  After a
 * delivered event, the next period after now.  After a missed one the
 * receiver has not taken the last event; nothing tells us when it does,
 * so poll, each consecutive miss waiting twice as long as the one before
 * (from one period up to the longer of BACKOFF_MAX_NS and the period).
 * Without this, chan_tick(1) would keep the timer thread firing into a
 * full channel at full speed for as long as nobody receives.
 */
static int64_t rearm(chan__timer_t *t, int64_t now)
{
    int64_t p = t->period;
    if (!t->missed) {
        t->backoff = 0;
        return next_after(t, now);
    }
    int64_t limit = p > BACKOFF_MAX_NS ? p : BACKOFF_MAX_NS;
    t->backoff = t->backoff == 0         ? p
                 : t->backoff > limit / 2 ? limit
                                          : 2 * t->backoff;
    /* The first deadline on the grid at least backoff after now (backoff
     * >= p; backoff - p < BACKOFF_MAX_NS, so this cannot overflow). */
    return next_after(t, now + (t->backoff - p));
}

static void *timer_thread(void *arg)
{
    chan__thread_name("chan-timer");
    (void)arg;
    chan__check(pthread_mutex_lock(&heap_mu));
    int64_t pass_start = chan__now();
    for (;;) {
        if (n == 0) {
            chan__check(pthread_cond_wait(&heap_cv, &heap_mu));
            pass_start = chan__now();
            continue;
        }
        chan__timer_t *t = heap[0];
        if (t->when > pass_start) {
            /* Everything due in this pass has fired: start the next one,
             * or sleep until something is due. */
            pass_start = chan__now();
            if (t->when <= pass_start)
                continue;
            if (t->when == INT64_MAX) {
                chan__check(pthread_cond_wait(&heap_cv, &heap_mu));
            } else {
                struct timespec ts = chan__timespec(t->when);
                int e = pthread_cond_timedwait(&heap_cv, &heap_mu, &ts);
                chan__assert(e == 0 || e == ETIMEDOUT);
            }
            /* Whatever woke us, the heap may have changed: look again. */
            pass_start = chan__now();
            continue;
        }
        int64_t now = chan__now();
        if (t->period > 0) {
            t->missed = 0;
            t->fire(t, now);
            chan__assert(heap[0] == t);
            t->when = rearm(t, now);
            sift_down(0);
        } else {
            heap_remove(0);
            t->fire(t, now);
        }
        let_contenders_in();
    }
    return NULL;
}

/* ---------------------------------------------------------------- setup */

/* atfork handlers: no thread may hold heap_mu across fork(). */
static void before_fork(void)
{
    heap_lock();
}

static void after_fork_parent(void)
{
    heap_unlock();
}

static void cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    chan__check(pthread_condattr_init(&attr));
    chan__check(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC));
    chan__check(pthread_cond_init(cv, &attr));
    pthread_condattr_destroy(&attr);
}

static void after_fork_child(void)
{
    /* The parent's timer thread may have been waiting on either condition
     * variable, and other threads may have been counted as contenders; in
     * the child none of them exists, so start afresh. */
    cond_init(&heap_cv);
    cond_init(&turn_cv);
    started = 0;
    handoff = 0;
    atomic_store_explicit(&contenders, 0, memory_order_relaxed);
    chan__check(pthread_mutex_unlock(&heap_mu));
}

static void init_once(void)
{
    cond_init(&heap_cv);
    cond_init(&turn_cv);
    chan__check(pthread_atfork(before_fork, after_fork_parent,
                               after_fork_child));
}

/* Starts the timer thread, detached, with all signals blocked, unless it
 * runs already.  heap_mu held.  Returns 0 or -ENOMEM. */
static int start_thread(void)
{
    if (started)
        return 0;
    int saved = chan__errno_save(); /* thread creation may set it */
    int rc = chan__thread_start_quiet(timer_thread, NULL);
    chan__errno_restore(saved);
    if (rc < 0)
        return rc;
    started = 1;
    return 0;
}

/* ---------------------------------------------------------------- API */

int chan__timer_start(chan__timer_t *t)
{
    chan__assert(t->slot == 0 && t->fire);
    chan__check(pthread_once(&once, init_once));
    heap_lock();
    int rc = start_thread();
    if (rc == 0)
        rc = heap_grow();
    if (rc == 0) {
        t->missed = 0;
        t->backoff = 0;
        heap_insert(t);
    }
    heap_unlock();
    return rc;
}

int chan__timer_cancel(chan__timer_t *t)
{
    /* heap_mu is statically initialised, so this works even if no timer
     * was ever started (and handoff is 0 then). */
    heap_lock();
    int was_pending = t->slot != 0;
    if (was_pending) {
        chan__assert(t->slot <= n && heap[t->slot - 1] == t);
        /* The thread may now sleep until a deadline that is gone; it
         * wakes, finds the heap changed, and sleeps again.  Not worth a
         * signal. */
        heap_remove(t->slot - 1);
    }
    heap_unlock();
    return was_pending;
}

int chan__timer_reset(chan__timer_t *t, int64_t when, int64_t period,
                      void (*flush)(chan__timer_t *t))
{
    chan__assert(t->fire);
    chan__check(pthread_once(&once, init_once));
    heap_lock();
    int64_t now = chan__now();
    int fire_now = period <= 0 && when <= now;
    int rc = 0;
    /* Everything that can fail comes first, so that a failure changes
     * nothing.  A pending t makes its own room when it leaves. */
    if (!fire_now && ((rc = start_thread()) < 0 ||
                      (t->slot == 0 && (rc = heap_grow()) < 0)))
        goto out;
    rc = t->slot != 0;
    if (rc) {
        chan__assert(t->slot <= n && heap[t->slot - 1] == t);
        heap_remove(t->slot - 1);
    }
    if (flush)
        flush(t);
    t->when = when;
    t->period = period;
    t->missed = 0;
    t->backoff = 0;
    if (fire_now)
        t->fire(t, now);
    else
        heap_insert(t);
out:
    heap_unlock();
    return rc;
}

int chan__timer_pending(void)
{
    heap_lock();
    int pending = n > 0;
    heap_unlock();
    return pending;
}
