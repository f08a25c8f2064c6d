/*
 * park.c - parking plain threads: a short adaptive spin on the state word,
 * then sleep (a futex on the state word on Linux; elsewhere the parker's
 * mutex and CLOCK_MONOTONIC condition variable).
 *
 * Invariants.
 *   - p->state is PARKED only while the owner sleeps in chan__park_wait()
 *     or has left it on a timeout (then it stays PARKED until the next
 *     chan__park_prepare()).
 *   - Only one waker per arming (the claim of waitq.h).  From EMPTY it
 *     CASes to NOTIFIED and is done; from PARKED it stores NOTIFIED and then
 *     wakes the sleeper (futex wake, or signal under p->mu).
 *   - The owner only spins from EMPTY: from PARKED, a NOTIFIED it saw may
 *     come from a waker still on its way to the wake call.  On Linux that
 *     late futex wake is harmless (futex.h); with a condition variable the
 *     owner trusts NOTIFIED only under p->mu, i.e. after the waker is done.
 *
 * Locking.  p->mu (not on Linux) guards the EMPTY -> PARKED step and the
 * sleep; it is innermost (src/internal.h) and used by this file only.
 *
 * Lifetimes.  The parker is thread-local.  Nothing a waker does after its
 * store of NOTIFIED can harm a parker whose owner has moved on or exited.
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <unistd.h>

#include "clock.h"
#include "futex.h"
#include "park.h"

chan__parker_t *(*_Atomic chan__park_task_hook)(void);
CHAN_TLS int chan__unpark_many_depth;
void (*_Atomic chan__unpark_many_hook)(void);

_Atomic int chan__debug_deadlock;
_Atomic unsigned long chan__debug_progress;

/* A thread's parker, with what only threads need. */
struct thread_parker {
    chan__parker_t p;                   /* first: see tp() */
    int ready;                          /* mu and cv initialised */
    int64_t spin;                       /* spin budget in ns */
    pthread_mutex_t mu;                 /* guards sleeping (not on Linux) */
    pthread_cond_t cv;                  /* CLOCK_MONOTONIC */
    /* What p.cache holds while the thread is not blocked (park.h). */
    _Alignas(16) unsigned char cache[CHAN_PARK_CACHE_BYTES];
};

static CHAN_TLS struct thread_parker thread_parker;

/* The thread parker p is the head of. */
static inline struct thread_parker *tp(chan__parker_t *p)
{
    return (struct thread_parker *)(void *)p;
}

/*
 * Spinning.  Waking a thread that sleeps in the kernel takes over ten
 * microseconds on virtual machines, and costs the waker a system call too,
 * while the usual wait on a busy channel (a peer's turnaround) is well
 * under a microsecond.
 * So a waiter first polls its state word: with a CPU pause for up to
 * SPIN_PAUSE_NS, then between sched_yield() calls (which let a peer run
 * when threads outnumber CPUs) up to its budget, at most SPIN_MAX_NS.  A
 * spin that ends in a wakeup restores the full budget; one that ends in
 * sleep shrinks it by an eighth, down to SPIN_MIN_NS, so a thread whose
 * waits are long (a heartbeat, a quit channel) soon stops burning CPU.
 */
enum {
    SPIN_PAUSE_NS = 2000,
    SPIN_MIN_NS = 2000,
    SPIN_MAX_NS = 30000,
};

/* 1 when there is more than one CPU to spin against; set once. */
static int spin_useful = -1;

static void parker_init(struct thread_parker *p)
{
    pthread_condattr_t attr;
    chan__check(pthread_mutex_init(&p->mu, NULL));
    chan__check(pthread_condattr_init(&attr));
    chan__check(pthread_condattr_setclock(&attr, CLOCK_MONOTONIC));
    chan__check(pthread_cond_init(&p->cv, &attr));
    pthread_condattr_destroy(&attr);
    p->p.ops = NULL;
    chan__park_cache_init(&p->p, p->cache);
    p->spin = SPIN_MAX_NS;
    p->ready = 1;
    if (__atomic_load_n(&spin_useful, __ATOMIC_RELAXED) < 0) {
        int saved = chan__errno_save();
        __atomic_store_n(&spin_useful, sysconf(_SC_NPROCESSORS_ONLN) > 1,
                         __ATOMIC_RELAXED);
        chan__errno_restore(saved);
    }
}

chan__parker_t *chan__park_self(void)
{
    chan__parker_t *(*hook)(void) =
        atomic_load_explicit(&chan__park_task_hook, memory_order_acquire);
    if (hook) {
        chan__parker_t *p = hook();
        if (p)
            return p;
    }
    struct thread_parker *t = &thread_parker;
    if (CHAN_UNLIKELY(!t->ready))
        parker_init(t);
    return &t->p;
}

static inline int notified(chan__parker_t *p)
{
    return atomic_load_explicit(&p->state, memory_order_acquire) ==
           CHAN_PARK_NOTIFIED;
}

/* Spins while the state is EMPTY; returns 1 if it became NOTIFIED. */
static int spin_for_notify(chan__parker_t *p)
{
    if (!__atomic_load_n(&spin_useful, __ATOMIC_RELAXED))
        return 0;
    int64_t start = chan__now(), now = start;
    int64_t budget = tp(p)->spin;
    while (now - start < budget) {
        if (now - start < SPIN_PAUSE_NS) {
            for (int i = 0; i < 8; i++) {
                if (notified(p))
                    goto woken;
                chan__cpu_relax();
            }
        } else {
            if (notified(p))
                goto woken;
            sched_yield();
        }
        now = chan__now();
    }
    if (notified(p))
        goto woken;
    tp(p)->spin = budget - budget / 8 > SPIN_MIN_NS ? budget - budget / 8
                                                    : SPIN_MIN_NS;
    return 0;
woken:
    tp(p)->spin = SPIN_MAX_NS;
    return 1;
}

#ifdef __linux__
/*
 * Sleeping on Linux: a futex on the state word itself.  The waker stores
 * NOTIFIED, then wakes; the owner sleeps while the word is PARKED.  One
 * kernel wake-up per hand-off, where a condition variable signalled under
 * its mutex costs two (the woken thread first sleeps again on the mutex).
 * The waker may call futex_wake after the owner has already seen NOTIFIED
 * and moved on, even after the thread is gone: futex.h says why that is
 * harmless.
 */
_Static_assert(sizeof(int) == sizeof(uint32_t), "futex on the state word");

static _Atomic uint32_t *state_word(chan__parker_t *p)
{
    return (_Atomic uint32_t *)(void *)&p->state;
}

static int sleep_until_notified(chan__parker_t *p, int64_t deadline)
{
    int s = CHAN_PARK_EMPTY;
    /* EMPTY -> PARKED; failing means NOTIFIED (or PARKED from a previous
     * timed-out wait, in which case we simply sleep again). */
    atomic_compare_exchange_strong_explicit(&p->state, &s, CHAN_PARK_PARKED,
                                            memory_order_acq_rel,
                                            memory_order_acquire);
    while (!notified(p)) {
        if (chan__futex_wait(state_word(p), CHAN_PARK_PARKED, deadline) ==
                -ETIMEDOUT &&
            !notified(p))
            return -ETIMEDOUT; /* still PARKED: see park.h, Timeouts */
    }
    return 0;
}

static void wake_sleeper(chan__parker_t *p)
{
    atomic_store_explicit(&p->state, CHAN_PARK_NOTIFIED, memory_order_release);
    chan__futex_wake(state_word(p), 1);
}
#else
/*
 * Sleeping elsewhere: the parker's mutex and CLOCK_MONOTONIC condition
 * variable.  The waker stores NOTIFIED and signals under the mutex, and the
 * owner only trusts a NOTIFIED it read while holding the mutex (or one it
 * read while spinning from EMPTY), so the owner cannot leave before the
 * waker is done with the parker.
 */
static int sleep_until_notified(chan__parker_t *p, int64_t deadline)
{
    int rc = 0;
    struct timespec ts = chan__timespec(deadline);
    chan__check(pthread_mutex_lock(&tp(p)->mu));
    int s = CHAN_PARK_EMPTY;
    atomic_compare_exchange_strong_explicit(&p->state, &s, CHAN_PARK_PARKED,
                                            memory_order_acq_rel,
                                            memory_order_acquire);
    while (!notified(p)) {
        if (deadline == CHAN_NO_DEADLINE) {
            chan__check(pthread_cond_wait(&tp(p)->cv, &tp(p)->mu));
        } else {
            int e = pthread_cond_timedwait(&tp(p)->cv, &tp(p)->mu, &ts);
            if (e == ETIMEDOUT && !notified(p)) {
                rc = -ETIMEDOUT;
                break;
            }
            chan__assert(e == 0 || e == ETIMEDOUT);
        }
    }
    chan__check(pthread_mutex_unlock(&tp(p)->mu));
    return rc;
}

static void wake_sleeper(chan__parker_t *p)
{
    chan__check(pthread_mutex_lock(&tp(p)->mu));
    atomic_store_explicit(&p->state, CHAN_PARK_NOTIFIED, memory_order_release);
    chan__check(pthread_cond_signal(&tp(p)->cv));
    chan__check(pthread_mutex_unlock(&tp(p)->mu));
}
#endif

int chan__park_wait(chan__parker_t *p, int64_t deadline)
{
    if (p->ops)
        return p->ops->wait(p, deadline);

    /* Only spin from EMPTY: from PARKED (a wait that timed out) NOTIFIED
     * may come from a waker still on its slow path. */
    if (atomic_load_explicit(&p->state, memory_order_acquire) ==
            CHAN_PARK_EMPTY &&
        spin_for_notify(p))
        return 0;
    return sleep_until_notified(p, deadline);
}

void chan__unpark(chan__parker_t *p)
{
    if (p->ops) { /* a task: its wake takes either state in one CAS */
        p->ops->wake(p);
        return;
    }
    int s = CHAN_PARK_EMPTY;
    /* Fast path: the owner has not gone to sleep; it will see NOTIFIED
     * while spinning or in its CAS.  acq_rel publishes everything the waker
     * wrote for the owner (the copied value, the chosen case) before the
     * owner can read NOTIFIED. */
    if (atomic_compare_exchange_strong_explicit(&p->state, &s,
                                                CHAN_PARK_NOTIFIED,
                                                memory_order_acq_rel,
                                                memory_order_acquire))
        return;
    chan__assert(s == CHAN_PARK_PARKED);
    wake_sleeper(p);
}
