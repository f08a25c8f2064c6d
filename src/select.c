/*
 * select.c - chan_select: wait on several channel operations, perform one.
 *
 * The algorithm is Go's selectgo, with a lock-free first look:
 *   0. Check every case; a bad one fails the whole call before anything
 *      is done.  Shuffle the enabled cases into a random poll order (so no
 *      ready case is starved) and sort them by channel address (the lock
 *      order), in O(n log n).  Walk the poll order, without locks, while
 *      the cases are on buffered channels that nobody waits on, and
 *      perform the first one the ring can take.
 *   1. Lock every distinct channel once, in address order.  Walk the poll
 *      order and perform the first case that can complete at once.
 *      Unless this is a try (timeout 0), freeze the rings of the buffered
 *      channels first (chan_impl.h), so that what this pass sees holds
 *      until pass 2 is done.
 *   2. If none can, queue one waiter per case, all sharing one sel, in
 *      poll order, unlock and park.
 *   3. Once claimed (by a peer or a close) or timed out, relock every
 *      channel and unlink the waiters that are still queued.
 *
 * Invariants.  Only the claimer of the sel completes an operation for this
 * select, and it completes exactly one (waitq.h, "The claim").  A select
 * never pairs with itself: pass 1 runs before any of its waiters is queued,
 * and in pass 2 it only queues.  Waiters of several cases on one channel
 * sit in that channel's queue in poll order, so the peer that takes the
 * oldest picks among them at random, as pass 1 does among ready cases.
 *
 * Locking.  Channel locks in ascending address order, each once; released
 * in reverse (src/internal.h).  No lock is held while parked.
 *
 * Descriptors.  A select with CHAN_FD cases takes its own path,
 * select_mixed() at the end of this file: the same passes without the
 * lock-free first look, with the descriptors polled (poll(2)) where the
 * channels are checked and a waiter queued on each descriptor's poller
 * state (netpoll.h) beside the channel waiters, all sharing one sel.
 * Channel-only selects never reach it.
 *
 * Lifetimes.  The sel is on this stack frame, and so are the waiters of a
 * select of up to SELECT_STACK_CASES enabled cases (MIXED_STACK_CASES for
 * one with descriptor cases); a larger one allocates
 * them, with its other scratch, and frees them just before returning.
 * Peers may read a linked waiter under its channel's lock until pass 3 has
 * unlinked it, which is why pass 3 relocks every channel, even after a
 * timeout, and why the call must not free the waiters nor return before
 * pass 3 is done.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>

#include "chan_impl.h"
#include "clock.h"
#include "netpoll.h"
#include "park.h"
#include "waitq.h"

/* Cases handled with stack storage; larger selects allocate. */
enum { SELECT_STACK_CASES = 16 };

/* Per-thread xorshift64* state for the poll order.  Read and updated in one
 * go, never across a park, so a task that changes threads is harmless. */
static CHAN_TLS uint64_t rng_state;

static uint32_t rng_next(void)
{
    uint64_t x = rng_state;
    if (CHAN_UNLIKELY(x == 0))
        x = (uint64_t)(uintptr_t)&rng_state ^ (uint64_t)chan__now() ^
            0x9e3779b97f4a7c15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return (uint32_t)((x * 0x2545f4914f6cdd1dull) >> 32);
}

/* A uniform integer in [0, n), by Lemire's multiply-shift. */
static inline uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(((uint64_t)rng_next() * n) >> 32);
}

/* Scratch for one call: the enabled cases in poll order and in lock order. */
struct scratch {
    int *poll;               /* case indices, shuffled */
    int *lock;               /* case indices; sorted by channel address
                              * once select_cases comes to lock */
    chan__waiter_t *waiters; /* indexed like poll[] */
};

/* Up to this many enabled cases the lock order comes from an insertion
 * sort, above from a heap sort (see sort_by_chan): about where the two
 * cost the same on x86-64, for cases in random order. */
enum { SELECT_SORT_SMALL = 32 };

static inline uintptr_t chan_key(const chan_case_t *cases, int i)
{
    return (uintptr_t)cases[i].ch;
}

/* Moves idx[root] down the max-heap idx[0..n) to where it belongs. */
static void sift_down(const chan_case_t *cases, int *idx, size_t root,
                      size_t n)
{
    int v = idx[root];
    uintptr_t key = chan_key(cases, v);
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            break;
        uintptr_t ck = chan_key(cases, idx[child]);
        if (child + 1 < n) {
            uintptr_t rk = chan_key(cases, idx[child + 1]);
            if (rk > ck) {
                child++;
                ck = rk;
            }
        }
        if (ck <= key)
            break;
        idx[root] = idx[child];
        root = child;
    }
    idx[root] = v;
}

/*
 * Sorts the case indices idx[0..n) by channel address, the lock order.
 * Small selects, the common kind, take an insertion sort: the fewest
 * instructions for a few cases, and linear when the cases come in address
 * order already.  Above SELECT_SORT_SMALL cases a heap sort, as in Go's
 * selectgo: O(n log n) compares whatever the order, where an insertion
 * sort takes O(n^2) (cases in descending address order are its worst)
 * and a large select would spend its time sorting.  Neither allocates or
 * recurses.  The heap sort is not stable, and need not be: cases on one
 * channel may come in any order here, as pass 2 queues in poll order.
 */
/* The heap sort half of sort_by_chan, out of line: small selects keep
 * their insertion sort inline. */
static CHAN_NOINLINE void heap_sort_by_chan(const chan_case_t *cases,
                                            int *idx, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(cases, idx, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        int top = idx[0];
        idx[0] = idx[end];
        idx[end] = top;
        sift_down(cases, idx, 0, end);
    }
}

static inline void sort_by_chan(const chan_case_t *cases, int *idx, size_t n)
{
    if (n > SELECT_SORT_SMALL) {
        heap_sort_by_chan(cases, idx, n);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        int v = idx[i];
        uintptr_t key = chan_key(cases, v);
        size_t j = i;
        while (j > 0 && chan_key(cases, idx[j - 1]) > key) {
            idx[j] = idx[j - 1];
            j--;
        }
        idx[j] = v;
    }
}

static void lock_all(chan_case_t *cases, const int *lock, size_t n)
{
    chan_t *prev = NULL;
    for (size_t i = 0; i < n; i++) {
        chan_t *ch = cases[lock[i]].ch;
        if (ch != prev)
            chan__lock(&ch->lock);
        prev = ch;
    }
}

static void unlock_all(chan_case_t *cases, const int *lock, size_t n)
{
    for (size_t i = n; i-- > 0;) {
        chan_t *ch = cases[lock[i]].ch;
        if (i == 0 || cases[lock[i - 1]].ch != ch)
            chan__unlock_ch(ch);
    }
}

/* With nothing to wait for: sleep out the timeout (Go's empty select). */
static int wait_nothing(int64_t timeout_ns)
{
    if (timeout_ns == 0)
        return -EAGAIN;
    return chan__sleep_until(chan__deadline(timeout_ns));
}

/* Whether any case is on a channel with a ring that is not frozen for
 * good, the only kind worth watching (chan__watch in chan_impl.h). */
static int any_ring(chan_case_t *cases, const struct scratch *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (chan__lockfree(cases[s->poll[i]].ch))
            return 1;
    return 0;
}

/*
 * Looks at rings that the watch of one select may take in all: the
 * CHAN_WATCH_POLLS rounds of chan__watch over up to 16 cases, fewer rounds
 * over more, so that the watch lasts about as long however many cases
 * there are.  A select of more cases than this does not watch: a pass over
 * all of them (pass 0 just made one) takes longer than the peer's
 * turnaround the watch waits for.
 */
enum { SELECT_WATCH_LOOKS = 16 * CHAN_WATCH_POLLS };

/*
 * The select form of chan__watch (chan_impl.h): called without locks, by a
 * plain thread about to lock its channels, for n <= SELECT_WATCH_LOOKS.
 * Returns 1 as soon as one of the buffered cases looks ready, 0 after
 * SELECT_WATCH_LOOKS / n rounds (CHAN_WATCH_POLLS at most).
 */
static int watch_any(chan_case_t *cases, const struct scratch *s, size_t n)
{
    size_t rounds = SELECT_WATCH_LOOKS / n;
    if (rounds > CHAN_WATCH_POLLS)
        rounds = CHAN_WATCH_POLLS;
    for (size_t round = 0; round < rounds; round++) {
        for (size_t i = 0; i < n; i++) {
            chan_t *ch = cases[s->poll[i]].ch;
            /* Relaxed: a hint; the passes decide. */
            if (chan__lockfree(ch) && chan__ring_ready_hint(
                               &ch->ring, cases[s->poll[i]].op == CHAN_SEND))
                return 1;
        }
        chan__cpu_relax();
    }
    return 0;
}

/*
 * Pass 0: walks the poll order while its cases are on buffered channels
 * and performs the first one that the ring takes without the lock.
 * Returns its index; -1 when every case was tried and none is ready (and
 * nobody waits on any of them), -2 when it stopped at a case that needs
 * the lock (an unbuffered channel, or one with waiters).
 */
static int poll_rings(chan_case_t *cases, const struct scratch *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        chan_case_t *c = &cases[s->poll[i]];
        if (!chan__lockfree(c->ch))
            return -2;
        int rc = c->op == CHAN_SEND ? chan__ring_send(&c->ch->ring, c->elem, 0)
                                    : chan__ring_recv(&c->ch->ring, c->elem, 0);
        if (rc == CHAN_RING_BUSY)
            return -2;
        if (rc != 0) {
            c->result = rc < 0 ? rc : 0;
            chan__progress();
            return s->poll[i];
        }
    }
    return -1;
}

/* The queue of ch that a case of kind op waits in. */
static inline chan__waitq_t *queue_of(chan_t *ch, int op)
{
    return op == CHAN_SEND ? &ch->sendq : &ch->recvq;
}

/*
 * Pass 2: queues waiters[i], sharing sel, for the case poll[i] of each of
 * the n enabled channel cases, in poll order: of several cases on one
 * channel, the one queued first is the one a peer takes, so this is what
 * chooses among them at random.  Every channel locked.
 */
static inline void queue_all(chan_case_t *cases, const int *poll,
                             chan__waiter_t *waiters, size_t n,
                             chan__sel_t *sel)
{
    for (size_t i = 0; i < n; i++) {
        int k = poll[i];
        chan__waiter_t *w = &waiters[i];
        w->sel = sel;
        w->elem = cases[k].elem;
        w->index = k;
        chan__waitq_push(queue_of(cases[k].ch, cases[k].op), w);
    }
}

/* Pass 3: unlinks those of the waiters queue_all queued that are still
 * queued.  Every channel locked. */
static inline void dequeue_all(chan_case_t *cases, const int *poll,
                               chan__waiter_t *waiters, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int k = poll[i];
        chan__waitq_remove(queue_of(cases[k].ch, cases[k].op), &waiters[i]);
    }
}

/* Pass 1: performs the first ready case in poll order and returns its
 * index, having unlocked everything; -1 (still locked) if none is ready. */
static int poll_cases(chan_case_t *cases, struct scratch *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        chan_case_t *c = &cases[s->poll[i]];
        chan__parker_t *wake = NULL;
        int rc = c->op == CHAN_SEND ? chan__send_now(c->ch, c->elem, &wake)
                                    : chan__recv_now(c->ch, c->elem, &wake);
        if (rc != 0) {
            unlock_all(cases, s->lock, n);
            chan__progress();
            if (wake)
                chan__unpark(wake);
            c->result = rc < 0 ? rc : 0;
            return s->poll[i];
        }
    }
    return -1;
}

static int select_cases(chan_case_t *cases, struct scratch *s, size_t n,
                        int64_t timeout_ns)
{
    int ready_case = poll_rings(cases, s, n);
    if (ready_case >= 0)
        return ready_case;
    if (ready_case == -1 && timeout_ns == 0)
        return -EAGAIN; /* all buffered, none ready, nobody waiting */
    if (timeout_ns != 0 && n <= SELECT_WATCH_LOOKS && any_ring(cases, s, n) &&
        chan__park_may_spin(chan__park_self()) && watch_any(cases, s, n)) {
        /* A plain thread watches the buffered cases for a moment before
         * it locks and queues (chan__watch explains why). */
        if ((ready_case = poll_rings(cases, s, n)) >= 0)
            return ready_case;
    }

    /* The lock order, sorted only now: a select that pass 0 completes
     * (the common case on busy buffered channels) never needs it. */
    sort_by_chan(cases, s->lock, n);
    lock_all(cases, s->lock, n);
    if ((ready_case = poll_cases(cases, s, n)) >= 0)
        return ready_case;
    if (timeout_ns == 0) {
        unlock_all(cases, s->lock, n);
        return -EAGAIN;
    }
    /* About to wait: freeze the rings, then poll once more, so that what
     * this last pass 1 sees stays true until the waiters are queued
     * (chan_impl.h).  Not before the first poll: rings frozen by a select
     * that then completes under the locks send concurrent operations on
     * them to the lock for nothing (transfer() in chan.c).  Unlocking
     * thaws them again if we do not queue. */
    int froze = 0;
    for (size_t i = 0; i < n; i++) {
        chan_case_t *c = &cases[s->lock[i]];
        if (chan__lockfree(c->ch))
            froze |= chan__freeze_for(c->ch, c->op == CHAN_SEND);
    }
    if (froze && (ready_case = poll_cases(cases, s, n)) >= 0)
        return ready_case;
    int64_t deadline = chan__deadline(timeout_ns);

    /* Pass 2: a waiter on every channel. */
    chan__sel_t sel;
    chan__sel_init(&sel);
    chan__park_note(sel.parker, CHAN_WAIT_SELECT, NULL, n, 0, deadline);
    queue_all(cases, s->poll, s->waiters, n, &sel);
    unlock_all(cases, s->lock, n);

    int rc = chan__sel_wait(&sel, deadline);

    /* Pass 3: unlink the losers.  With a single case, once chosen, its
     * claimer already unlinked it and there is nothing to do. */
    if (n > 1 || rc != 0) {
        lock_all(cases, s->lock, n);
        dequeue_all(cases, s->poll, s->waiters, n);
        unlock_all(cases, s->lock, n);
    }
    if (rc != 0)
        return rc;
    cases[sel.chosen].result = sel.result;
    return sel.chosen;
}

static int select_mixed(chan_case_t *cases, size_t ncases, size_t nch,
                        size_t nfd, int64_t timeout_ns);

int chan_select(chan_case_t *cases, size_t ncases, int64_t timeout_ns)
{
    if ((ncases > 0 && !cases) || ncases > (size_t)INT_MAX)
        return -EINVAL;

    /* Scratch for every case, enabled or not: the cases are counted by
     * the same pass that shuffles them. */
    int poll_buf[SELECT_STACK_CASES], lock_buf[SELECT_STACK_CASES];
    chan__waiter_t waiter_buf[SELECT_STACK_CASES];
    struct scratch s = { poll_buf, lock_buf, waiter_buf };
    void *heap = NULL;
    if (ncases > SELECT_STACK_CASES) {
        int saved_errno = chan__errno_save();
        heap = malloc(ncases * (2 * sizeof(int) + sizeof(chan__waiter_t)));
        chan__errno_restore(saved_errno);
        if (!heap)
            return -ENOMEM;
        s.waiters = heap;
        s.poll = (int *)(s.waiters + ncases);
        s.lock = s.poll + ncases;
    }

    /* One pass checks every case and puts the enabled channel cases in a
     * uniformly random poll order (inside-out Fisher-Yates); s.lock gets
     * them in case order, for select_cases to sort if it comes to lock.
     * A case of an unknown op, or a send of NULL, fails the whole select
     * before anything happens. */
    size_t n = 0, nfd = 0;
    int rc = 0;
    for (size_t i = 0; i < ncases; i++) {
        const chan_case_t *c = &cases[i];
        if (CHAN_LIKELY(c->op == CHAN_RECV || c->op == CHAN_SEND)) {
            if (!c->ch)
                continue;
            chan__check_live(c->ch, "chan_select");
            if (c->op == CHAN_SEND && !c->elem && c->ch->elem_size > 0) {
                rc = -EINVAL;
                break;
            }
            uint32_t j = rng_below((uint32_t)n + 1);
            s.poll[n] = s.poll[j];
            s.poll[j] = (int)i;
            s.lock[n] = (int)i;
            n++;
        } else if (c->op == CHAN_FD) { /* ch and elem ignored; fd < 0 disables */
            if (c->fd < 0)
                continue;
            if (!(c->events & (POLLIN | POLLOUT))) {
                rc = -EINVAL;
                break;
            }
            nfd++;
        } else {
            rc = -EINVAL;
            break;
        }
    }
    if (rc == 0) {
        if (CHAN_UNLIKELY(nfd > 0)) {
            free(heap); /* select_mixed has scratch of its own */
            heap = NULL;
            rc = select_mixed(cases, ncases, n, nfd, timeout_ns);
        } else if (n == 0) {
            rc = wait_nothing(timeout_ns);
        } else {
            rc = select_cases(cases, &s, n, timeout_ns);
        }
    }
    if (heap)
        free(heap);
    return rc;
}

/* ---------------------------------------------------------------- FD cases */

/* One CHAN_FD case of a mixed select. */
struct fdcase {
    chan__pd_t *pd;          /* NULL for a select that does not wait */
    chan__pd_snap_t snap;    /* taken before the descriptors are polled */
    chan__fdwaiter_t w;
    int err;                 /* why queueing failed (-EBADF: closed), or 0 */
};

/* Enabled cases handled with stack storage by select_mixed. */
enum { MIXED_STACK_CASES = 8 };

/*
 * Scratch of a mixed select.  poll[] holds every enabled case in random
 * order: a channel case as its index k, descriptor case j as -(j + 1);
 * ch.poll the channel cases alone in the same order, ch.lock them in lock
 * order, and ch.waiters[i] is the waiter of ch.poll[i]; pfd[j] and fdc[j]
 * describe descriptor case j, of index fdk[j].
 */
struct mixed {
    struct scratch ch;
    int *poll;
    int *fdk;
    struct pollfd *pfd;
    struct fdcase *fdc;
};

/* The ready events of descriptor case j after a poll: > 0, -EBADF for a
 * descriptor that is not open, 0 if not ready. */
static int fd_revents(const struct mixed *m, size_t j)
{
    if (m->fdc[j].err)
        return m->fdc[j].err;
    short r = m->pfd[j].revents;
    return r & POLLNVAL ? -EBADF : r;
}

/* Polls every descriptor case: 0, or a negative errno of poll(2). */
static int poll_fds(struct mixed *m, size_t nfd)
{
    int n = chan__fd_poll(m->pfd, nfd);
    return n < 0 ? n : 0;
}

/* One of the descriptor cases that are ready after a poll, chosen at
 * random; -1 if none is. */
static int pick_ready_fd(const struct mixed *m, size_t nfd)
{
    size_t seen = 0;
    int pick = -1;
    for (size_t j = 0; j < nfd; j++)
        if (fd_revents(m, j) != 0 && rng_below((uint32_t)++seen) == 0)
            pick = (int)j;
    return pick;
}

/*
 * Pass 1 of a mixed select, channels locked: performs the first ready case
 * in poll order (a descriptor case is ready if the poll before the locking
 * said so) and returns its index, having unlocked everything; -1 (still
 * locked) if none is ready.
 */
static int poll_mixed(chan_case_t *cases, struct mixed *m, size_t nch,
                      size_t nall)
{
    for (size_t i = 0; i < nall; i++) {
        int k = m->poll[i];
        if (k >= 0) {
            chan_case_t *c = &cases[k];
            chan__parker_t *wake = NULL;
            int rc = c->op == CHAN_SEND ? chan__send_now(c->ch, c->elem, &wake)
                                        : chan__recv_now(c->ch, c->elem, &wake);
            if (rc == 0)
                continue;
            unlock_all(cases, m->ch.lock, nch);
            if (wake)
                chan__unpark(wake);
            c->result = rc < 0 ? rc : 0;
            return k;
        }
        size_t j = (size_t)(-k - 1);
        int r = fd_revents(m, j);
        if (r != 0) {
            unlock_all(cases, m->ch.lock, nch);
            cases[m->fdk[j]].result = r;
            return m->fdk[j];
        }
    }
    return -1;
}

/* Unlinks every waiter of a mixed select that is still queued. */
static void dequeue_mixed(chan_case_t *cases, struct mixed *m, size_t nch,
                          size_t nfd)
{
    lock_all(cases, m->ch.lock, nch);
    dequeue_all(cases, m->ch.poll, m->ch.waiters, nch);
    unlock_all(cases, m->ch.lock, nch);
    for (size_t j = 0; j < nfd; j++)
        if (m->fdc[j].pd)
            chan__pd_dequeue(m->fdc[j].pd, &m->fdc[j].w);
}

/*
 * The select of mixed channel and descriptor cases.  A descriptor case
 * is chosen when poll(2) reports it ready, with result its revents.  The
 * poller's wakeup says that the descriptor was ready when the poller
 * looked: if it looked after the case was queued, its events stand for a
 * poll now; otherwise the descriptor is polled again, and if it is not
 * ready after all (the select's own first look, or another reader, took
 * the readiness), the select starts over with the same deadline.
 */
static int select_cases_mixed(chan_case_t *cases, struct mixed *m, size_t nch,
                              size_t nfd, int64_t timeout_ns)
{
    size_t nall = nch + nfd;
    int64_t deadline = chan__deadline(timeout_ns);
    if (timeout_ns != 0) {
        for (size_t j = 0; j < nfd; j++) {
            int rc = chan__pd_get(cases[m->fdk[j]].fd, &m->fdc[j].pd);
            if (rc < 0)
                return rc;
        }
    }
    for (;;) {
        for (size_t j = 0; j < nfd; j++) {
            m->fdc[j].err = 0;
            if (m->fdc[j].pd)
                chan__pd_snap(m->fdc[j].pd, &m->fdc[j].snap);
        }
        int rc = poll_fds(m, nfd);
        if (rc < 0)
            return rc;
        lock_all(cases, m->ch.lock, nch);
        int ready_case = poll_mixed(cases, m, nch, nall);
        if (ready_case >= 0)
            return ready_case;
        if (timeout_ns == 0) {
            unlock_all(cases, m->ch.lock, nch);
            return -EAGAIN;
        }
        /* As in select_cases: freeze, then look at the channels again. */
        int froze = 0;
        for (size_t i = 0; i < nch; i++) {
            chan_case_t *c = &cases[m->ch.lock[i]];
            if (chan__lockfree(c->ch))
                froze |= chan__freeze_for(c->ch, c->op == CHAN_SEND);
        }
        if (froze && (ready_case = poll_cases(cases, &m->ch, nch)) >= 0)
            return ready_case;

        /* Pass 2: a waiter on every channel, then on every descriptor. */
        chan__sel_t sel;
        chan__sel_init(&sel);
        queue_all(cases, m->ch.poll, m->ch.waiters, nch, &sel);
        unlock_all(cases, m->ch.lock, nch);
        int recheck = 0;
        for (size_t j = 0; j < nfd; j++) {
            chan_case_t *c = &cases[m->fdk[j]];
            chan__fdwaiter_t *w = &m->fdc[j].w;
            w->sel = &sel;
            w->index = m->fdk[j];
            w->dirs = (c->events & POLLIN ? CHAN_PD_IN : 0) |
                      (c->events & POLLOUT ? CHAN_PD_OUT : 0);
            w->queued = 0;
            w->revents = 0;
            /* Not queued: an edge came (poll again below), or an error,
             * which makes the case ready with it (-EBADF: chan_fd_close). */
            int q = chan__pd_queue(m->fdc[j].pd, c->fd, w, &m->fdc[j].snap);
            if (q != 0)
                recheck = 1;
            if (q < 0)
                m->fdc[j].err = q;
        }
        /* A descriptor that was not queued would never wake us: take the
         * sel back, and either choose a descriptor that is ready now or
         * start over.  If a peer has claimed the sel meanwhile, its
         * wakeup is on the way: take that instead. */
        if (recheck && chan__sel_cancel(&sel)) {
            dequeue_mixed(cases, m, nch, nfd);
            if ((rc = poll_fds(m, nfd)) < 0)
                return rc;
            int j = pick_ready_fd(m, nfd);
            if (j >= 0) {
                cases[m->fdk[j]].result = fd_revents(m, (size_t)j);
                return m->fdk[j];
            }
            continue;
        }
        rc = chan__sel_wait(&sel, deadline);

        /* Pass 3: unlink the losers. */
        dequeue_mixed(cases, m, nch, nfd);
        if (rc != 0)
            return rc;
        chan_case_t *c = &cases[sel.chosen];
        if (c->op != CHAN_FD || sel.result < 0) {
            c->result = sel.result;
            return sel.chosen;
        }
        int r = 0;
        for (size_t j = 0; j < nfd; j++) {
            if (m->fdk[j] != sel.chosen)
                continue;
            /* The poller's events, if it found them after the waiter was
             * queued, are as good as a poll now (netpoll.c). */
            struct pollfd one = m->pfd[j];
            r = m->fdc[j].w.revents & (one.events | POLLERR | POLLHUP);
            if (r == 0 && chan__fd_poll(&one, 1) > 0)
                r = one.revents & POLLNVAL ? -EBADF : one.revents;
        }
        if (r != 0) {
            c->result = r;
            return sel.chosen;
        }
        /* Not ready after all: start over, same deadline. */
    }
}

static int select_mixed(chan_case_t *cases, size_t ncases, size_t nch,
                        size_t nfd, int64_t timeout_ns)
{
    size_t nall = nch + nfd;
    int poll_buf[MIXED_STACK_CASES], chpoll_buf[MIXED_STACK_CASES],
        lock_buf[MIXED_STACK_CASES], fdk_buf[MIXED_STACK_CASES];
    chan__waiter_t waiter_buf[MIXED_STACK_CASES];
    struct pollfd pfd_buf[MIXED_STACK_CASES];
    struct fdcase fdc_buf[MIXED_STACK_CASES];
    struct mixed m = { { chpoll_buf, lock_buf, waiter_buf }, poll_buf,
                       fdk_buf, pfd_buf, fdc_buf };
    void *heap = NULL;
    if (nall > MIXED_STACK_CASES) {
        int saved_errno = chan__errno_save();
        heap = malloc(nch * sizeof(chan__waiter_t) +
                      nfd * (sizeof(struct fdcase) + sizeof(struct pollfd)) +
                      (nall + 2 * nch + nfd) * sizeof(int));
        chan__errno_restore(saved_errno);
        if (!heap)
            return -ENOMEM;
        m.ch.waiters = heap;
        m.fdc = (struct fdcase *)(m.ch.waiters + nch);
        m.pfd = (struct pollfd *)(m.fdc + nfd);
        m.poll = (int *)(m.pfd + nfd);
        m.ch.poll = m.poll + nall;
        m.ch.lock = m.ch.poll + nch;
        m.fdk = m.ch.lock + nch;
    }

    /* Inside-out Fisher-Yates over every enabled case, as chan_select. */
    size_t n = 0, nc = 0, nf = 0;
    for (size_t i = 0; i < ncases; i++) {
        int code;
        if (cases[i].op == CHAN_FD) {
            if (cases[i].fd < 0)
                continue;
            m.fdk[nf] = (int)i;
            m.pfd[nf] = (struct pollfd){ .fd = cases[i].fd,
                                         .events = (short)(cases[i].events &
                                                           (POLLIN | POLLOUT)) };
            m.fdc[nf].pd = NULL;
            code = -(int)++nf;
        } else {
            if (!cases[i].ch)
                continue;
            m.ch.lock[nc++] = (int)i;
            code = (int)i;
        }
        uint32_t j = rng_below((uint32_t)n + 1);
        m.poll[n] = m.poll[j];
        m.poll[j] = code;
        n++;
    }
    for (size_t i = 0, c = 0; i < nall; i++)
        if (m.poll[i] >= 0)
            m.ch.poll[c++] = m.poll[i];
    sort_by_chan(cases, m.ch.lock, nch);

    int rc = select_cases_mixed(cases, &m, nch, nfd, timeout_ns);
    free(heap);
    return rc;
}
