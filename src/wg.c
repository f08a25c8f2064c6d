/*
 * wg.c - wait groups, like Go's sync.WaitGroup.
 *
 * An atomic counter, and a list of waiters under a mutex.  A waiter is an
 * event waiter (waitq.h) on the waiting thread's or task's stack and
 * sleeps through the park interface (park.h), so a task parks instead of
 * blocking its worker.
 * An add is one CAS on the counter, as in Go; only an add that brings it to
 * zero while someone waits takes the mutex.
 *
 * Invariants:
 *   - 0 <= count (every add checks in its CAS loop).
 *   - nwait counts the listed waiters plus any waiter between its increment
 *     and its look at count; it and the list change under wg->mu.
 *   - With wg->mu held, waiters is non-empty only while count > 0, or while
 *     an add that brought count to zero is on its way to take the list.
 *
 * No lost wakeups.  A waiter increments nwait, then reads count; an add
 * that reaches zero changes count, then reads nwait.  All four are
 * sequentially consistent, so one of the two sees the other: the waiter
 * sees zero and returns, or the add sees the waiter and, under wg->mu,
 * takes the list, if count is still zero then (a later add may have raised
 * it again: those waiters then wait for the next zero).
 *
 * Locking.  wg->mu guards nwait's changes and the waiter list.  It is a
 * leaf lock (src/internal.h): nothing else is taken under it, and waiters
 * are unparked after it is dropped.
 *
 * Lifetimes.  A waiter lives on its owner's stack until the owner returns
 * from chan__event_wait().  The add that claims it detaches the whole
 * list under wg->mu and then, still under wg->mu, claims every waiter on
 * it (chan__event_claim_all); after dropping the lock it reads each
 * waiter's next link before unparking it and never touches it afterwards
 * (chan__event_wake_all).  Because the whole list is
 * detached at zero, the group may be reused (added to again) at once, even
 * before the old waiters have woken.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "clock.h"
#include "park.h"
#include "waitq.h"

struct chan_wg {
    pthread_mutex_t mu;         /* see Locking above */
    _Atomic int64_t count;      /* the counter; never negative */
    _Atomic long nwait;         /* see Invariants above */
    /* Blocked in chan_wg_wait (waitq.h, "Event waiters"). */
    chan__event_waiter_t *waiters;
};

chan_wg_t *chan_wg_new(void)
{
    int saved_errno = chan__errno_save();
    chan_wg_t *wg = calloc(1, sizeof *wg);
    if (wg && pthread_mutex_init(&wg->mu, NULL) != 0) {
        free(wg);
        wg = NULL;
    }
    chan__errno_restore(saved_errno);
    if (!wg)
        return NULL;
    atomic_init(&wg->count, 0);
    atomic_init(&wg->nwait, 0);
    return wg;
}

void chan_wg_free(chan_wg_t *wg)
{
    if (!wg)
        return;
    chan__check(pthread_mutex_destroy(&wg->mu));
    free(wg);
}

int chan_wg_add(chan_wg_t *wg, int delta)
{
    if (!wg)
        return -EINVAL;
    int64_t c = atomic_load_explicit(&wg->count, memory_order_relaxed);
    do {
        /* A counter that would go negative is a caller bug (Go panics);
         * so is one that would overflow, which takes 2^32 maximal adds. */
        if ((delta < 0 && c < -(int64_t)delta) ||
            (delta > 0 && c > INT64_MAX - delta))
            return -EINVAL;
        /* seq_cst: see No lost wakeups; also releases the caller's work
         * to whoever sees the counter at zero. */
    } while (!atomic_compare_exchange_weak_explicit(
        &wg->count, &c, c + delta, memory_order_seq_cst,
        memory_order_relaxed));
    if (c + delta != 0 ||
        atomic_load_explicit(&wg->nwait, memory_order_seq_cst) == 0)
        return 0;

    chan__check(pthread_mutex_lock(&wg->mu));
    chan__event_waiter_t *list = NULL;
    if (atomic_load_explicit(&wg->count, memory_order_relaxed) == 0 &&
        wg->waiters) {
        list = chan__event_claim_all(&wg->waiters);
        atomic_store_explicit(&wg->nwait, 0, memory_order_relaxed);
    }
    chan__check(pthread_mutex_unlock(&wg->mu));
    chan__event_wake_all(list);
    return 0;
}

int chan_wg_done(chan_wg_t *wg)
{
    return chan_wg_add(wg, -1);
}

int chan_wg_wait(chan_wg_t *wg)
{
    if (!wg)
        return -EINVAL;
    if (atomic_load_explicit(&wg->count, memory_order_acquire) == 0)
        return 0;
    chan__check(pthread_mutex_lock(&wg->mu));
    atomic_fetch_add_explicit(&wg->nwait, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&wg->count, memory_order_seq_cst) == 0) {
        atomic_fetch_sub_explicit(&wg->nwait, 1, memory_order_relaxed);
        chan__check(pthread_mutex_unlock(&wg->mu));
        return 0;
    }
    chan__event_wait(&wg->waiters, &wg->mu, CHAN_WAIT_WG, wg);
    return 0;
}
