/*
 * netpoll.c - the process's poller: per-descriptor state (chan__pd_t), its
 * waiters, and the thread that turns the backend's readiness events into
 * wakeups (netpoll.h describes the protocol the I/O calls follow).
 *
 * Starting.  Nothing exists until the first I/O call that may wait: then
 * chan__pd_get() opens the backend and starts one detached thread, with
 * every signal blocked (thread.c), the poller thread.  A program that
 * never waits for a descriptor pays nothing.
 *
 * Who polls.  At most one thread at a time is in the backend's wait (so
 * that a kick reaches the one it is meant for), the holder of the poll:
 *   HOLD_THREAD  the poller thread, waiting with no timeout;
 *   HOLD_LOOK    an idle scheduler worker, looking without waiting
 *                before it naps (sched.c, idle());
 *   HOLD_BLOCK   an idle worker asleep in the wait instead of on its
 *                scheduler's condition variable; whatever gives it work
 *                kicks it out (chan__netpoll_kick, an eventfd write);
 *   HOLD_NONE    nobody, for instance while the workers run tasks.
 * A worker that polls finds the tasks the events wake on its own queue
 * and runs them without waking any other thread (Go's findRunnable).
 * Anybody who polls wakes every waiter that is ready, plain threads and
 * other schedulers' tasks included.  The poller thread polls while no
 * worker does: it holds the poll until a worker asks for it (want) and
 * no plain thread waits on a descriptor (thread_waiters, counted when
 * queued); then it hands it over, at its next event or at once when the
 * asking worker is about to sleep and kicks it.  A worker that found the
 * poll with the poller thread naps until it is handed over.  Handed
 * over, the poller thread is in standby (standby()): it takes the poll
 * back when nobody holds it and either a plain thread waits (the queueing
 * thread and a releasing worker poke it) or no worker has released it
 * for HANDOVER_NS.  So a waiter is never left without a poller for more
 * than HANDOVER_NS, a plain thread not at all, and while the workers
 * keep polling the poller thread sleeps, waking every HANDOVER_NS to
 * check; once a worker has slept in the poll for a whole period, the
 * poller thread sleeps with no timeout and the worker's release pokes it.
 * Timers are not merged into the wait: the timer thread fires them and
 * the wakeup reaches a sleeping worker as any other work does, by a kick.
 * The standby uses seq_cst stores and loads on both sides (holder or
 * thread_waiters, then sb_state; sb_state, then holder and
 * thread_waiters): of two such pairs, one sees the other's store, so
 * either the poller thread sees the change or the changer pokes it.
 *
 * Descriptors.  A two-level table maps a descriptor number to its pd:
 * PD_TOP pointers to leaves of PD_LEAF pds, allocated on first use and
 * never freed, so a pd found once stays valid (numbers from PD_TOP *
 * PD_LEAF up get -ENOMEM).  A pd outlives the files behind its number:
 * the backend registration is checked again before every wait that
 * parks (chan__pollb_add says whether the number still names the
 * registered file), and each registration has a seq, part of the backend
 * key, so that readiness of an old file never reaches waiters of a new
 * one.
 *
 * Why one system call per wait that parks.  The contract lets a program
 * close(2) a descriptor on which nobody waits and get the number back for
 * another file (by open, accept, dup2, ...), and nothing of that reaches
 * this library: unlike Go's runtime, it does not own close.  A waiter
 * that parks on a number whose file is not in the interest list is never
 * woken, so each such wait must know, then, that the number still names
 * the registered file, and nothing short of asking the kernel tells:
 *   - events are no proof: the interest list is keyed by (open file,
 *     number) and an entry lives as long as its open file, not as long
 *     as the number, so a file closed here but alive in a duplicate
 *     keeps reporting under the old key, just as a live one does; and a
 *     close may come right after any event, leaving no trace;
 *   - the tries (recv, read, poll) succeed on whatever file the number
 *     names: they prove it open, not which file it is;
 *   - checking later instead (only waits still parked after a while)
 *     makes the first wait on a reused number late by that while, and a
 *     wait whose deadline falls within it times out though its file was
 *     ready: that is not "works normally".
 * So every wait that would park makes one EPOLL_CTL_ADD, under pd->lock;
 * calls that succeed at once, or see an edge since their snapshot, make
 * none.  Its cost on the echo benchmarks is measured in bench/RESULTS.md
 * ("I/O: echo against Go").
 *
 * Invariants (under pd->lock).
 *   - A queued waiter's sel may already be settled elsewhere (a stale
 *     waiter); whoever finds it unlinks it.  A waiter is claimed (its sel
 *     moved WAITING -> DONE, waitq.h) at most once, by the poller, by
 *     chan__pd_close or by a new registration, and its owner is unparked
 *     by that claimer only, after the lock is dropped.
 *   - pd->edges[d] grows on every event of the current registration that
 *     has direction d, before the waiters of d are claimed.  A waiter is
 *     queued only if edges[d] still equals the snapshot taken before its
 *     owner's try, so every edge after the try either is seen by the
 *     owner or claims the waiter.
 *   - poll_round grows (seq_cst) before every backend wait; a waiter
 *     records it when queued.  The backend computes an event's ready
 *     events during its wait, so an event of a later round than the
 *     waiter's was found after the waiter was queued, hence after its
 *     owner's try failed: the claim hands those events to the owner
 *     (w->revents), which may report them instead of polling again.  An
 *     event of the waiter's own round may have been found before the try
 *     (and its readiness consumed by it): the owner polls.
 *
 * Locking.  pd->lock is a leaf lock (src/internal.h): nothing is taken
 * under it, and wakeups happen after it is released.  The backend call of
 * chan__pd_queue (one epoll_ctl) is made under it, so that the check "is
 * this the registered file" and the queueing are one step.  start_mu
 * guards starting the poller; it is taken without any other lock.  sb_mu
 * guards the poller thread's standby (its condition variable); it is a
 * leaf lock, taken under a scheduler's idle_mu by a worker that gives
 * the poll back (sched.c).
 *
 * Lifetimes.  A waiter lives on its owner's stack.  A claimer may use it
 * until it unparks the owner (it reads sel->parker first and touches
 * nothing after); an owner that wakes or times out unlinks what is left
 * under pd->lock before returning.
 *
 * fork().  The child has no poller thread, and the epoll instance it
 * inherited is the parent's.  The child handler drops that instance
 * without touching the parent's registrations, empties every waiter queue
 * (their owners are threads that do not exist in the child) and resets
 * every pd lock, so the next I/O call of the child opens a fresh instance,
 * registers its descriptors again (every chan__pollb_add is then new) and
 * starts its own thread.
 */
#include "internal.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>

#include "clock.h"
#include "netpoll.h"
#include "park.h"
#include "waitq.h"

enum { PD_LEAF_BITS = 10, PD_LEAF = 1 << PD_LEAF_BITS, PD_TOP = 1 << 14 };

typedef struct pd_slot {
    _Alignas(CHAN_CACHELINE) chan__pd_t pd; /* one line each: no sharing */
} pd_slot_t;

/* Leaves of the table, installed once with a CAS, never freed. */
static pd_slot_t *_Atomic table[PD_TOP];

static pthread_mutex_t start_mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int started;         /* poller thread running; start_mu */
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* Who polls (see the top). */
enum { HOLD_NONE, HOLD_THREAD, HOLD_LOOK, HOLD_BLOCK };
/* No worker has held the poll for this long: the poller thread takes it. */
enum { HANDOVER_NS = 1000000 };
/* The poller thread's standby: not in it, waiting with a timeout, without. */
enum { SB_NO, SB_TIMED, SB_UNTIMED };
static _Atomic int holder;              /* HOLD_* */
static _Atomic int want;                /* a worker asked for the poll */
static _Atomic int64_t worker_polled;   /* when a worker last released it */
static _Atomic unsigned thread_waiters; /* queued waiters of plain threads */
static _Atomic uint32_t poll_round;     /* backend waits begun (see the top) */
static _Atomic int sb_state;            /* SB_*; written under sb_mu */
static pthread_mutex_t sb_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sb_cv;            /* CLOCK_MONOTONIC; init_once */

/* ------------------------------------------------------------ the table */

static chan__pd_t *pd_find(int fd)
{
    if (fd < 0 || fd >= PD_TOP * PD_LEAF)
        return NULL;
    /* Acquire pairs with the installing CAS: the leaf's zeroed memory. */
    pd_slot_t *leaf = atomic_load_explicit(&table[fd >> PD_LEAF_BITS],
                                           memory_order_acquire);
    return leaf ? &leaf[fd & (PD_LEAF - 1)].pd : NULL;
}

static int leaf_make(int top)
{
    int saved = chan__errno_save(); /* calloc sets it; this library does not */
    /* Zeroed memory is a valid pd: free lock, seq 0, no waiters. */
    pd_slot_t *leaf = calloc(PD_LEAF, sizeof *leaf);
    chan__errno_restore(saved);
    if (!leaf)
        return -ENOMEM;
    pd_slot_t *expect = NULL;
    if (!atomic_compare_exchange_strong_explicit(&table[top], &expect, leaf,
                                                 memory_order_acq_rel,
                                                 memory_order_acquire))
        free(leaf); /* another thread installed one first */
    return 0;
}

/* ------------------------------------------------------------ starting */

/* Wakes the poller thread if it is in standby, to look at the state again. */
static void poke(void)
{
    if (atomic_load(&sb_state) == SB_NO)
        return;
    chan__check(pthread_mutex_lock(&sb_mu));
    chan__check(pthread_cond_signal(&sb_cv));
    chan__check(pthread_mutex_unlock(&sb_mu));
}

/*
 * The poller thread's standby: returns once it holds the poll
 * (HOLD_THREAD), which it takes when nobody holds it and either a plain
 * thread waits or no worker has held it for HANDOVER_NS.
 */
static void standby(void)
{
    int64_t seen = -1;
    chan__check(pthread_mutex_lock(&sb_mu));
    for (;;) {
        /* seq_cst store, then loads: pairs with the other side's store
         * (holder, thread_waiters), then load of sb_state; one of the two
         * sees the other (see "Who polls"). */
        atomic_store(&sb_state, SB_TIMED);
        int h = atomic_load(&holder);
        int64_t last = atomic_load(&worker_polled);
        int64_t due;
        if (h == HOLD_NONE) {
            due = last + HANDOVER_NS;
            if (atomic_load(&thread_waiters) != 0 || chan__now() >= due) {
                int expect = HOLD_NONE;
                if (atomic_compare_exchange_strong(&holder, &expect,
                                                   HOLD_THREAD))
                    break;
                continue;
            }
        } else if (h == HOLD_BLOCK && last == seen) {
            /* A worker has waited in the poll for a whole period: its
             * release will poke.  Say so first, then look again. */
            atomic_store(&sb_state, SB_UNTIMED);
            if (atomic_load(&holder) == HOLD_BLOCK &&
                atomic_load(&worker_polled) == last) {
                chan__check(pthread_cond_wait(&sb_cv, &sb_mu));
                continue;
            }
            continue;
        } else {
            due = chan__now() + HANDOVER_NS;
        }
        seen = last;
        struct timespec ts = chan__timespec(due);
        int rc = pthread_cond_timedwait(&sb_cv, &sb_mu, &ts);
        if (rc != ETIMEDOUT)
            chan__check(rc);
    }
    atomic_store(&sb_state, SB_NO);
    chan__check(pthread_mutex_unlock(&sb_mu));
}

static void *poller_main(void *arg)
{
    chan__thread_name("chan-netpoll");
    (void)arg;
    for (;;) {
        standby();
        for (;;) {
            int rc = chan__netpoll_poll(-1);
            /* Only a broken instance fails here (not an interruption). */
            chan__assert(rc >= 0);
            /* A worker asked for the poll: hand it over, unless a plain
             * thread waits (then this thread keeps it, and the workers
             * sleep on their condition variables). */
            if (atomic_load(&want)) {
                if (atomic_load(&thread_waiters) == 0)
                    break;
                atomic_store(&want, 0);
            }
        }
        atomic_store(&want, 0);
        atomic_store_explicit(&worker_polled, chan__now(),
                              memory_order_relaxed);
        atomic_store(&holder, HOLD_NONE);
    }
    return NULL;
}

int chan__netpoll_hold(int block)
{
    /* Acquire: a worker that sees 1 sees the opened backend. */
    if (!atomic_load_explicit(&started, memory_order_acquire))
        return 0;
    int expect = HOLD_NONE;
    if (atomic_compare_exchange_strong(&holder, &expect,
                                       block ? HOLD_BLOCK : HOLD_LOOK))
        return 1;
    if (expect == HOLD_THREAD && atomic_load(&thread_waiters) == 0) {
        /* Ask for it: a spinner asks for the next event, a worker about
         * to sleep kicks the poller thread out of its wait. */
        if (!block) {
            if (!atomic_load_explicit(&want, memory_order_relaxed))
                atomic_store(&want, 1);
        } else if (atomic_exchange(&want, 2) != 2) {
            chan__pollb_kick();
        }
        return -1;
    }
    return expect == HOLD_LOOK ? -1 : 0;
}

void chan__netpoll_release(int block)
{
    (void)block; /* a poller thread in a timed standby needs no poke */
    atomic_store_explicit(&worker_polled, chan__now(), memory_order_relaxed);
    atomic_store(&holder, HOLD_NONE); /* seq_cst: see standby() */
    int sb = atomic_load(&sb_state);
    if (sb == SB_UNTIMED ||
        (sb != SB_NO && atomic_load(&thread_waiters) != 0))
        poke();
}

void chan__netpoll_kick(void)
{
    chan__pollb_kick();
}

static void sb_cv_init(void)
{
    pthread_condattr_t ca;
    chan__check(pthread_condattr_init(&ca));
    chan__check(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    chan__check(pthread_cond_init(&sb_cv, &ca));
    pthread_condattr_destroy(&ca);
}

static void before_fork(void)
{
    chan__check(pthread_mutex_lock(&start_mu));
}

static void after_fork_parent(void)
{
    chan__check(pthread_mutex_unlock(&start_mu));
}

static void after_fork_child(void)
{
    chan__pollb_forget();
    for (int i = 0; i < PD_TOP; i++) {
        pd_slot_t *leaf = atomic_load_explicit(&table[i], memory_order_relaxed);
        if (!leaf)
            continue;
        for (int j = 0; j < PD_LEAF; j++) {
            chan__pd_t *pd = &leaf[j].pd;
            chan__lock_init(&pd->lock);
            pd->head = pd->tail = NULL;
        }
    }
    atomic_store_explicit(&started, 0, memory_order_relaxed);
    /* No thread of the parent polls here; the poller thread may have held
     * sb_mu at the fork. */
    atomic_store_explicit(&holder, HOLD_NONE, memory_order_relaxed);
    atomic_store_explicit(&want, 0, memory_order_relaxed);
    atomic_store_explicit(&thread_waiters, 0, memory_order_relaxed);
    atomic_store_explicit(&sb_state, SB_NO, memory_order_relaxed);
    chan__check(pthread_mutex_init(&sb_mu, NULL));
    sb_cv_init();
    chan__check(pthread_mutex_unlock(&start_mu));
}

static void init_once(void)
{
    sb_cv_init();
    chan__check(pthread_atfork(before_fork, after_fork_parent,
                               after_fork_child));
}

static int start(void)
{
    chan__check(pthread_once(&once, init_once));
    int rc = 0;
    chan__check(pthread_mutex_lock(&start_mu));
    if (!atomic_load_explicit(&started, memory_order_relaxed)) {
        rc = chan__pollb_open();
        if (rc == 0)
            rc = chan__thread_start_quiet(poller_main, NULL);
        if (rc == 0)
            atomic_store_explicit(&started, 1, memory_order_release);
        else
            chan__pollb_forget();
        if (rc < 0)
            rc = -ENOMEM;
    }
    chan__check(pthread_mutex_unlock(&start_mu));
    return rc;
}

int chan__pd_get(int fd, chan__pd_t **out)
{
    if (fd < 0)
        return -EBADF;
    if (fd >= PD_TOP * PD_LEAF)
        return -ENOMEM;
    /* Acquire: a thread that sees 1 sees the opened backend. */
    if (CHAN_UNLIKELY(!atomic_load_explicit(&started, memory_order_acquire))) {
        int rc = start();
        if (rc < 0)
            return rc;
    }
    chan__pd_t *pd = pd_find(fd);
    if (CHAN_UNLIKELY(!pd)) {
        int rc = leaf_make(fd >> PD_LEAF_BITS);
        if (rc < 0)
            return rc;
        pd = pd_find(fd);
    }
    *out = pd;
    return 0;
}

/* ------------------------------------------------------------ waiters */

static void push(chan__pd_t *pd, chan__fdwaiter_t *w)
{
    w->next = NULL;
    w->prev = pd->tail;
    if (pd->tail)
        pd->tail->next = w;
    else
        pd->head = w;
    pd->tail = w;
    w->queued = 1;
    w->revents = 0;
    w->round = atomic_load(&poll_round); /* seq_cst: see the invariants */
    w->thread = w->sel->parker->ops == NULL;
    if (w->thread)
        atomic_fetch_add(&thread_waiters, 1); /* seq_cst: see standby() */
}

static void unlink_w(chan__pd_t *pd, chan__fdwaiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        pd->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        pd->tail = w->prev;
    w->next = w->prev = NULL;
    w->queued = 0;
    if (w->thread)
        atomic_fetch_sub_explicit(&thread_waiters, 1, memory_order_relaxed);
}

/*
 * Unlinks every waiter for one of dirs and claims those still WAITING
 * with result, handing revents (the ready events of an event of poll
 * round round; 0: none) to those queued in an earlier round; returns the
 * winners, linked by wnext, for wake_all().  Called with pd->lock held.
 */
static chan__fdwaiter_t *claim(chan__pd_t *pd, int dirs, int result,
                               short revents, uint32_t round)
{
    chan__fdwaiter_t *won = NULL, **tail = &won;
    chan__fdwaiter_t *w = pd->head;
    while (w) {
        chan__fdwaiter_t *next = w->next;
        if (w->dirs & dirs) {
            unlink_w(pd, w);
            int expect = CHAN_SEL_WAITING;
            /* acq_rel as in chan__waitq_claim: acquire the owner's setup,
             * release our win to a losing chan__sel_cancel. */
            if (atomic_compare_exchange_strong_explicit(
                    &w->sel->state, &expect, CHAN_SEL_DONE,
                    memory_order_acq_rel, memory_order_acquire)) {
                w->sel->chosen = w->index;
                w->sel->result = result;
                if ((int32_t)(round - w->round) > 0)
                    w->revents = revents;
                w->wnext = NULL;
                *tail = w;
                tail = &w->wnext;
            }
        }
        w = next;
    }
    return won;
}

/* Wakes the owners of claimed waiters.  Called without locks; a waiter
 * may be gone once its owner is unparked, so read it first. */
static void wake_all(chan__fdwaiter_t *w)
{
    while (w) {
        chan__fdwaiter_t *next = w->wnext;
        chan__unpark(w->sel->parker);
        w = next;
    }
}

static int edged(chan__pd_t *pd, int dirs, const chan__pd_snap_t *snap)
{
    for (int d = 0; d < 2; d++)
        if ((dirs & (1 << d)) &&
            atomic_load_explicit(&pd->edges[d], memory_order_relaxed) !=
                snap->edges[d])
            return 1;
    return 0;
}

int chan__pd_queue(chan__pd_t *pd, int fd, chan__fdwaiter_t *w,
                   const chan__pd_snap_t *snap)
{
    chan__fdwaiter_t *retry = NULL;
    int rc;
    chan__lock(&pd->lock);
    if (atomic_load_explicit(&pd->closes, memory_order_relaxed) !=
        snap->closes) {
        rc = -EBADF;
        goto out;
    }
    rc = chan__pollb_add(fd, pd->seq + 1);
    if (rc < 0)
        goto out;
    if (rc == 1) {
        /* A new file behind the number.  Whoever still waits here waited
         * for the old one (closed with close(2) under its feet): let it
         * try again, on whatever the number names now. */
        pd->seq++;
        retry = claim(pd, CHAN_PD_IN | CHAN_PD_OUT, 0, 0, 0);
    }
    if (edged(pd, w->dirs, snap)) {
        rc = 1;
        goto out;
    }
    push(pd, w);
    rc = 0;
out:
    chan__unlock(&pd->lock);
    wake_all(retry);
    /* A plain thread is served by the poller thread if nobody polls.
     * (A worker that holds the poll now pokes when it gives it back: it
     * sees thread_waiters, as this sees holder; see standby().) */
    if (rc == 0 && w->thread && atomic_load(&holder) == HOLD_NONE)
        poke();
    return rc;
}

void chan__pd_dequeue(chan__pd_t *pd, chan__fdwaiter_t *w)
{
    chan__lock(&pd->lock);
    if (w->queued)
        unlink_w(pd, w);
    chan__unlock(&pd->lock);
}

int chan__pd_wait(chan__pd_t *pd, int fd, int dirs,
                  const chan__pd_snap_t *snap, int64_t deadline)
{
    chan__sel_t sel;
    chan__sel_init(&sel);
    chan__park_note(sel.parker, CHAN_WAIT_FD, NULL, (size_t)fd,
                    (dirs & CHAN_PD_IN ? POLLIN : 0) |
                        (dirs & CHAN_PD_OUT ? POLLOUT : 0),
                    deadline);
    chan__fdwaiter_t w = { .sel = &sel, .index = 0, .dirs = dirs };
    int rc = chan__pd_queue(pd, fd, &w, snap);
    if (rc != 0)
        return rc == 1 ? 0 : rc;
    if (chan__sel_wait(&sel, deadline) == -ETIMEDOUT) {
        chan__pd_dequeue(pd, &w);
        return -ETIMEDOUT;
    }
    return sel.result == 0 && w.revents > 0 ? w.revents : sel.result;
}

void chan__pd_close(int fd)
{
    chan__pd_t *pd = pd_find(fd);
    if (!pd)
        return;
    chan__lock(&pd->lock);
    /* Release: a call that snapshots the new count after this sees the
     * descriptor as closed (it returns -EBADF instead of queueing). */
    atomic_fetch_add_explicit(&pd->closes, 1, memory_order_release);
    pd->seq++; /* events of the old registration already fetched: ignored */
    if (atomic_load_explicit(&started, memory_order_acquire))
        chan__pollb_del(fd);
    chan__fdwaiter_t *won = claim(pd, CHAN_PD_IN | CHAN_PD_OUT, -EBADF, 0, 0);
    chan__unlock(&pd->lock);
    wake_all(won);
}

/* ------------------------------------------------------------ polling */

static void ready(const chan__pollev_t *ev, uint32_t round)
{
    chan__pd_t *pd = pd_find(ev->fd);
    if (!pd)
        return;
    chan__lock(&pd->lock);
    chan__fdwaiter_t *won = NULL;
    if (pd->seq == ev->seq) {
        /* Release pairs with chan__pd_snap's acquire. */
        for (int d = 0; d < 2; d++)
            if (ev->dirs & (1 << d))
                atomic_fetch_add_explicit(&pd->edges[d], 1,
                                          memory_order_release);
        won = claim(pd, ev->dirs, 0, ev->revents, round);
    }
    chan__unlock(&pd->lock);
    wake_all(won);
}

int chan__netpoll_poll(int64_t timeout_ns)
{
    enum { BATCH = 64 };
    chan__pollev_t evs[BATCH];
    /* seq_cst, before the wait: see the invariants at the top. */
    uint32_t round = atomic_fetch_add(&poll_round, 1) + 1;
    int n = chan__pollb_wait(evs, BATCH, timeout_ns);
    for (int i = 0; i < n; i++)
        ready(&evs[i], round);
    return n;
}
