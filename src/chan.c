/*
 * chan.c - the channel object: creation and references, the ring buffer,
 * send and receive in their blocking, non-blocking and timed forms, close.
 *
 * The invariants and the locking rules of a channel are in chan_impl.h;
 * the ring of a buffered channel is in ring.h; how a waiter is queued and
 * claimed is in waitq.h; how it sleeps, in park.h.  An operation on a
 * buffered channel first tries the ring without the lock.  A blocked
 * operation is a one-case select without the shuffling and sorting: queue
 * one waiter, park, and either be claimed by a peer or close (which did all
 * the work) or time out and unlink.
 *
 * Lifetimes.  The waiter and its sel live in the blocked caller's parker's
 * cache (chan__wait1_acquire, waitq.h), in its thread or its task, until
 * the call returns.  A peer
 * that claims them copies the value and fills the sel under ch->lock,
 * then drops the lock and unparks the owner; after chan__unpark() it never
 * touches them again.
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "chan_impl.h"
#include "clock.h"
#include "lock.h"
#include "park.h"
#include "ring.h"
#include "waitq.h"

/* Space for the struct rounded up so that the buffer after it is aligned
 * for any element type. */
#define CHAN_HDR_SIZE                                                         \
    ((sizeof(struct chan) + CHAN_CACHELINE - 1) & ~(size_t)(CHAN_CACHELINE - 1))

chan_t *chan_make(size_t elem_size, size_t capacity)
{
    size_t bytes = 0;
    if (elem_size && capacity) {
        /* Leave room for the header and the alignment below, so that the
         * size passed to malloc cannot wrap around. */
        size_t stride = chan__ring_stride(elem_size);
        if (!stride ||
            capacity > (SIZE_MAX - CHAN_HDR_SIZE - CHAN_CACHELINE) / stride)
            return NULL;
        bytes = stride * capacity;
    }
    /* Aligned by hand rather than with aligned_alloc: glibc's leaves a
     * small fragment in front of the block that makes every later free of
     * a large channel sweep its fastbins. */
    int saved_errno = chan__errno_save();
    void *mem = malloc(CHAN_HDR_SIZE + bytes + CHAN_CACHELINE - 1);
    chan__errno_restore(saved_errno);
    if (!mem)
        return NULL;
    chan_t *ch = (chan_t *)(((uintptr_t)mem + CHAN_CACHELINE - 1) &
                            ~(uintptr_t)(CHAN_CACHELINE - 1));
    memset(ch, 0, sizeof *ch);
    ch->mem = mem;
    chan__lock_init(&ch->lock);
    ch->elem_size = elem_size;
    ch->cap = capacity;
    ch->unlock_op = CHAN_UNLOCK_PLAIN;
    switch (chan__flavor_of(capacity)) {
    case CHAN_FLAVOR_SYNC:
        break;
    case CHAN_FLAVOR_ONE:
        chan__ring_init(&ch->ring, (unsigned char *)ch + CHAN_HDR_SIZE,
                        capacity, elem_size);
        chan__ring_freeze(&ch->ring, CHAN_FROZEN_BOTH); /* for good */
        break;
    case CHAN_FLAVOR_RING:
        chan__ring_init(&ch->ring, (unsigned char *)ch + CHAN_HDR_SIZE,
                        capacity, elem_size);
        ch->unlock_op = CHAN_UNLOCK_THAW;
        break;
    }
    ch->magic = CHAN_MAGIC_LIVE;
    atomic_init(&ch->closed, 0);
    atomic_init(&ch->refs, 1);
    return ch;
}

chan_t *chan_retain(chan_t *ch)
{
    /* Relaxed: whoever hands ch on already owns a reference, so the
     * object cannot go away concurrently (as with shared_ptr).  A count
     * of 0 means it went away before (chan_impl.h, "Use after release"). */
    if (ch && CHAN_UNLIKELY(atomic_fetch_add_explicit(
                                &ch->refs, 1, memory_order_relaxed) == 0))
        chan__misuse("chan_retain", "channel used after its last chan_release");
    return ch;
}

void chan_release(chan_t *ch)
{
    if (!ch)
        return;
    /* acq_rel: the last releaser must see every other holder's writes
     * before it frees the channel. */
    size_t old = atomic_fetch_sub_explicit(&ch->refs, 1, memory_order_acq_rel);
    if (old != 1) {
        if (CHAN_UNLIKELY(old == 0))
            chan__misuse("chan_release",
                         "channel released again after its last chan_release");
        return;
    }
    /* Nobody else may use ch now, so nobody may wait on it: a waiter left
     * here would sleep forever, and its stack would hold links into freed
     * memory.  Read without the lock: every correct user of ch is done,
     * and its release ordered its last unlock before this.  (Under
     * ThreadSanitizer with the lock, so that the mistake is reported as
     * such rather than as a race with the waiter's queueing.) */
#ifdef CHAN_TSAN
    chan__lock(&ch->lock);
    int waiters = ch->recvq.head || ch->sendq.head;
    chan__unlock(&ch->lock);
#else
    int waiters = ch->recvq.head || ch->sendq.head;
#endif
    if (CHAN_UNLIKELY(waiters))
        chan__misuse("chan_release", "last reference released while a thread "
                                     "or task is blocked on the channel");
    if (ch->finalize)
        ch->finalize(ch);
    if (CHAN_UNLIKELY(ch->pollfd))
        chan__pollfd_close(ch);
    if (CHAN_CHECK_MAGIC) {
        /* Poison (chan_impl.h, "Use after release"): refs is 0 already. */
        ch->magic = CHAN_MAGIC_DEAD;
        ch->cap = SIZE_MAX;
        atomic_store_explicit(&ch->ring.tail, CHAN_RING_WAIT,
                              memory_order_relaxed);
        atomic_store_explicit(&ch->ring.head, CHAN_RING_WAIT,
                              memory_order_relaxed);
    }
    free(ch->mem);
}

void chan__misuse(const char *fn, const char *what)
{
    fprintf(stderr, "libchan: %s: %s\n", fn, what);
    abort();
}

static inline void copy(void *dst, const void *src, size_t n)
{
    if (n && dst)
        memcpy(dst, src, n);
}

/* Fills a claimed waiter's sel and returns its parker for unparking. */
static inline chan__parker_t *complete(chan__waiter_t *w, int result)
{
    w->sel->chosen = w->index;
    w->sel->result = result;
    return w->sel->parker;
}

int chan__send_now(chan_t *ch, const void *elem, chan__parker_t **wake)
{
    if (atomic_load_explicit(&ch->closed, memory_order_relaxed))
        return -EPIPE;
    chan__waiter_t *w = ch->recvq.head ? chan__waitq_claim(&ch->recvq) : NULL;
    if (w) {
        /* Straight to the receiver: one copy, no detour through the ring
         * (which is empty: receivers only wait on an empty one). */
        copy(w->elem, elem, ch->elem_size);
        *wake = complete(w, 0);
        return 1;
    }
    if (chan__buffered(ch) && chan__ring_ready_hint(&ch->ring, 1))
        return chan__ring_send(&ch->ring, elem, 1);
    return 0;
}

int chan__recv_now(chan_t *ch, void *elem, chan__parker_t **wake)
{
    if (chan__buffered(ch)) {
        /* Empty, or closed and drained: no sender can be waiting then,
         * as senders wait only on a full ring. */
        if (!chan__ring_ready_hint(&ch->ring, 0))
            return 0;
        int r = chan__ring_recv(&ch->ring, elem, 1);
        if (r <= 0)
            return r;
        /* The ring has room again: move the oldest blocked sender's value
         * in at the tail, so FIFO order across ring and queue holds.  A
         * sender waits only on a full, frozen ring, so the room is the one
         * just made. */
        if (ch->sendq.head) {
            chan__waiter_t *w = chan__waitq_claim(&ch->sendq);
            if (w) {
                chan__assert(chan__ring_send(&ch->ring, w->elem, 1) == 1);
                *wake = complete(w, 0);
            }
        }
        return 1;
    }
    chan__waiter_t *w = chan__waitq_claim(&ch->sendq);
    if (w) {
        copy(elem, w->elem, ch->elem_size);
        *wake = complete(w, 0);
        return 1;
    }
    if (atomic_load_explicit(&ch->closed, memory_order_relaxed))
        return -EPIPE;
    return 0;
}

int chan__watch(chan_t *ch, int is_send)
{
    for (int i = 0; i < CHAN_WATCH_POLLS; i++) {
        /* Relaxed loads: a hint only.  The caller tries again. */
        if (chan__ring_ready_hint(&ch->ring, is_send))
            return 1;
        chan__cpu_relax();
    }
    return 0;
}

/* The lock-free attempt on a buffered channel: 1 done, -EPIPE closed, 0
 * would block, CHAN_RING_BUSY when someone waits (take the lock). */
static inline int ring_try(chan_t *ch, int is_send, void *elem)
{
    return is_send ? chan__ring_send(&ch->ring, elem, 0)
                   : chan__ring_recv(&ch->ring, elem, 0);
}

/*
 * Tries the operation now.  Called with ch->lock held.  If it completes
 * (or the channel is closed), unlocks, wakes the peer it served and returns
 * 1 with the result in *rc; otherwise returns 0 with the lock still held.
 */
static int attempt(chan_t *ch, int is_send, void *elem, int *rc)
{
    chan__parker_t *wake = NULL;
    int r = is_send ? chan__send_now(ch, elem, &wake)
                    : chan__recv_now(ch, elem, &wake);
    if (r == 0)
        return 0;
    chan__unlock_ch(ch);
    chan__progress();
    if (wake)
        chan__unpark(wake);
    *rc = r < 0 ? r : 0;
    return 1;
}

/* The public function behind a transfer() call, for a misuse report.  (A
 * timed call with timeout CHAN_FOREVER is named as the untimed one.) */
static const char *op_name(int is_send, int64_t timeout_ns)
{
    if (timeout_ns == 0)
        return is_send ? "chan_trysend" : "chan_tryrecv";
    if (timeout_ns == CHAN_FOREVER)
        return is_send ? "chan_send" : "chan_recv";
    return is_send ? "chan_timedsend" : "chan_timedrecv";
}

/*
 * One send or receive with a deadline; timeout_ns as in the contract.
 * Returns 0, -EPIPE, -EAGAIN (timeout_ns == 0) or -ETIMEDOUT.
 */
static int transfer(chan_t *ch, int is_send, void *elem, int64_t timeout_ns)
{
    int rc;
    if (chan__lockfree(ch)) {
        /* Nobody waits and the ring can take it: done without the lock. */
        int r = ring_try(ch, is_send, elem);
        if (r == 0 && timeout_ns != 0 &&
            chan__park_may_spin(chan__park_self()) && chan__watch(ch, is_send))
            r = ring_try(ch, is_send, elem);
        if (r == 1) {
            chan__progress();
            return 0;
        }
        if (r < 0)
            return r;
        /* A ring that is full or empty while nobody waits is a final
         * answer for a try; with waiters (BUSY), ask under the lock. */
        if (r == 0 && timeout_ns == 0)
            return -EAGAIN;
        /* About to take the lock: not on a freed channel, which every
         * channel looks like here, its ring BUSY (chan_impl.h, "Use after
         * release"). */
        if (CHAN_CHECK_MAGIC && CHAN_UNLIKELY(ch->magic != CHAN_MAGIC_LIVE))
            chan__check_live(ch, op_name(is_send, timeout_ns));
    }

    /*
     * A buffered channel's ring is frozen before the look that precedes
     * queueing, so that what that look sees stays true until we are queued
     * (chan_impl.h); unlocking thaws it again if we do not queue.  A thread
     * freezes it before its first look: it has watched the ring already and
     * will most likely wait.  A task comes here without watching, mostly to
     * complete under the lock, and a ring it froze would send every
     * concurrent operation to the lock as well, which then freeze it in
     * turn: so a task looks first, and freezes and looks again only if it
     * must wait.
     */
    chan__parker_t *self = timeout_ns != 0 ? chan__park_self() : NULL;
    chan__lock(&ch->lock);
    if (chan__buffered(ch) && self && chan__park_may_spin(self))
        chan__freeze_for(ch, is_send);
    if (attempt(ch, is_send, elem, &rc))
        return rc;
    if (timeout_ns == 0) {
        chan__unlock_ch(ch);
        return -EAGAIN;
    }
    /* (0 from freeze_for: frozen already, and the look above stands.) */
    if (chan__buffered(ch) && chan__freeze_for(ch, is_send) &&
        attempt(ch, is_send, elem, &rc))
        return rc;
    int64_t deadline = chan__deadline(timeout_ns);

    chan__wait1_t *b = chan__wait1_acquire(self);
    chan__sel_init_for(&b->sel, self);
    b->sel.exclusive = deadline == CHAN_NO_DEADLINE;
    b->w = (chan__waiter_t){ .sel = &b->sel, .elem = elem, .index = 0 };
    chan__park_note(self, is_send ? CHAN_WAIT_SEND : CHAN_WAIT_RECV, ch,
                    ch->elem_size, ch->cap, deadline);
    chan__waitq_t *q = is_send ? &ch->sendq : &ch->recvq;
    chan__waitq_push(q, &b->w);
    chan__unlock_ch(ch);

    if (chan__sel_wait(&b->sel, deadline) == 0) {
        rc = b->sel.result; /* the claimer unlinked w and did the copy */
    } else {
        chan__lock(&ch->lock);
        chan__waitq_remove(q, &b->w);
        chan__unlock_ch(ch);
        rc = -ETIMEDOUT;
    }
    chan__wait1_release(self, b);
    return rc;
}

static inline int bad_elem(chan_t *ch, const void *elem)
{
    return !ch || (!elem && ch->elem_size > 0);
}

int chan_send(chan_t *ch, const void *elem)
{
    if (bad_elem(ch, elem))
        return -EINVAL;
    return transfer(ch, 1, (void *)elem, CHAN_FOREVER);
}

int chan_recv(chan_t *ch, void *elem)
{
    if (!ch)
        return -EINVAL;
    return transfer(ch, 0, elem, CHAN_FOREVER);
}

int chan_trysend(chan_t *ch, const void *elem)
{
    if (bad_elem(ch, elem))
        return -EINVAL;
    return transfer(ch, 1, (void *)elem, 0);
}

int chan_tryrecv(chan_t *ch, void *elem)
{
    if (!ch)
        return -EINVAL;
    return transfer(ch, 0, elem, 0);
}

int chan_timedsend(chan_t *ch, const void *elem, int64_t timeout_ns)
{
    if (bad_elem(ch, elem))
        return -EINVAL;
    return transfer(ch, 1, (void *)elem, timeout_ns);
}

int chan_timedrecv(chan_t *ch, void *elem, int64_t timeout_ns)
{
    if (!ch)
        return -EINVAL;
    return transfer(ch, 0, elem, timeout_ns);
}

/* Claims every live waiter of q for close, appending them to *tail. */
static chan__waiter_t **claim_all(chan__waitq_t *q, chan__waiter_t **tail)
{
    chan__waiter_t *w;
    while ((w = chan__waitq_claim(q)) != NULL) {
        complete(w, -EPIPE);
        w->next = NULL; /* reuse the unlinked waiter's link for our list */
        *tail = w;
        tail = &w->next;
    }
    return tail;
}

int chan_close(chan_t *ch)
{
    if (!ch)
        return -EINVAL;
    chan__waiter_t *list = NULL;
    chan__check_live(ch, "chan_close");
    chan__lock(&ch->lock);
    if (atomic_load_explicit(&ch->closed, memory_order_relaxed)) {
        chan__unlock_ch(ch);
        return -EPIPE;
    }
    atomic_store_explicit(&ch->closed, 1, memory_order_relaxed);
    if (chan__buffered(ch))
        chan__ring_close(&ch->ring);
    claim_all(&ch->sendq, claim_all(&ch->recvq, &list));
    chan__unlock_ch(ch);
    chan__progress();

    /* Wake them now that the lock is dropped.  Read next before unparking:
     * the owner may return, and its waiter vanish, at once.  There may be
     * thousands: tasks among them are queued a batch at a time (park.h). */
    chan__unpark_many_begin();
    while (list) {
        chan__waiter_t *next = list->next;
        chan__unpark(list->sel->parker);
        list = next;
    }
    chan__unpark_many_end();
    return 0;
}

size_t chan_len(chan_t *ch)
{
    /* A snapshot, as Go's len(ch). */
    return ch && chan__buffered(ch) ? chan__ring_len(&ch->ring) : 0;
}

size_t chan_cap(chan_t *ch)
{
    return ch ? ch->cap : 0;
}

size_t chan_elem_size(chan_t *ch)
{
    return ch ? ch->elem_size : 0;
}
