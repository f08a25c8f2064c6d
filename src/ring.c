/*
 * ring.c - the lock-free ring of a buffered channel (see ring.h for the
 * positions, the flags, the stamps and why).
 */
#include "internal.h"

#include <errno.h>
#include <sched.h>
#include <string.h>

#include "ring.h"

static inline _Atomic size_t *stamp_of(unsigned char *slot)
{
    return (_Atomic size_t *)(void *)slot;
}

/*
 * Stamps are kept less the slot's index, so that they all start at 0: for
 * position pos the stored stamp is compared with lap_of(pos), pos less its
 * index, where ring.h's rules compare the stamp with pos.
 */
static inline size_t lap_of(chan__ring_t *r, size_t pos)
{
    return pos & ~(r->one_lap - 1);
}

static inline unsigned char *slot_at(chan__ring_t *r, size_t pos)
{
    return r->slots + (pos & (r->one_lap - 1)) * r->stride;
}

/* The position after pos. */
static inline size_t next_pos(chan__ring_t *r, size_t pos)
{
    size_t index = pos & (r->one_lap - 1);
    if (index + 1 < r->cap)
        return pos + 1;
    return (pos & ~(r->one_lap - 1)) + r->one_lap; /* index 0, next lap */
}

/*
 * Moves *word from *seen to next, as a CAS that reloads *seen on failure.
 * A word with RING_WAIT set changes only under the channel lock (ring.h),
 * so whoever sees it set here holds the lock (others returned BUSY) and
 * needs no read-modify-write: a plain store does.
 */
static inline int claim(_Atomic size_t *word, size_t *seen, size_t next)
{
    if (*seen & CHAN_RING_WAIT) {
        atomic_store_explicit(word, next, memory_order_relaxed);
        return 1;
    }
    return atomic_compare_exchange_weak_explicit(
        word, seen, next, memory_order_relaxed, memory_order_relaxed);
}

/* Backoff after losing a CAS to another thread: CPU pauses, doubling up
 * to 64.  Racing at once again would only bounce the cache line between
 * the two; stepping back lets the winner do a few operations in a row. */
#define SPIN_LIMIT 6

static void spin(unsigned *step)
{
    unsigned n = 1u << (*step < SPIN_LIMIT ? *step : SPIN_LIMIT);
    for (unsigned i = 0; i < n; i++)
        chan__cpu_relax();
    if (*step <= SPIN_LIMIT)
        (*step)++;
}

/*
 * Waiting for a peer's operation in progress (or for a stale position to
 * catch up): the same pauses, then give the CPU away in case the peer was
 * preempted between its CAS and its stamp store.
 */
static void backoff(unsigned *step)
{
    if (*step < SPIN_LIMIT)
        spin(step);
    else
        sched_yield();
}

void chan__ring_init(chan__ring_t *r, unsigned char *slots, size_t cap,
                     size_t elem_size)
{
    r->slots = slots;
    r->cap = cap;
    r->elem_size = elem_size;
    r->stride = chan__ring_stride(elem_size);
    r->frozen = 0;
    /* Strictly greater than cap, so that "holds the value sent at pos"
     * (pos + 1) and "received, free one lap later" (pos + one_lap) differ
     * even for a ring of one slot.  Unused without slots. */
    size_t lap = 2;
    if (elem_size)
        while (lap <= cap)
            lap <<= 1;
    r->one_lap = lap;
    /* Every stamp starts at 0, "free for lap 0" (see lap_of): one memset,
     * not a loop. */
    if (elem_size)
        memset(slots, 0, cap * r->stride);
    atomic_init(&r->tail, 0);
    atomic_init(&r->head, 0);
}

/*
 * Elements of size 0 carry no data, so their ring has no slots: a CAS on
 * head or tail is the whole operation, with nothing in progress after it.
 */
static int count_send(chan__ring_t *r, int locked)
{
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    for (;;) {
        if (tail & CHAN_RING_CLOSED)
            return -EPIPE;
        if ((tail & CHAN_RING_WAIT) && !locked)
            return CHAN_RING_BUSY;
        size_t head = CHAN_RING_POS(
            atomic_load_explicit(&r->head, memory_order_acquire));
        if (chan__ring_full(r, head, CHAN_RING_POS(tail)))
            return 0;
        if (atomic_compare_exchange_weak_explicit(&r->tail, &tail, tail + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            return 1;
    }
}

static int count_recv(chan__ring_t *r, int locked)
{
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    for (;;) {
        if ((head & CHAN_RING_WAIT) && !locked)
            return CHAN_RING_BUSY;
        size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        if (CHAN_RING_POS(tail) == CHAN_RING_POS(head))
            return (tail & CHAN_RING_CLOSED) ? -EPIPE : 0;
        if (atomic_compare_exchange_weak_explicit(&r->head, &head, head + 1,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed))
            return 1;
    }
}

int chan__ring_send(chan__ring_t *r, const void *elem, int locked)
{
    if (!r->elem_size)
        return count_send(r, locked);
    unsigned step = 0;
    size_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    for (;;) {
        if (tail & CHAN_RING_CLOSED)
            return -EPIPE;
        if ((tail & CHAN_RING_WAIT) && !locked)
            return CHAN_RING_BUSY;
        size_t pos = CHAN_RING_POS(tail);
        unsigned char *slot = slot_at(r, pos);
        size_t lap = lap_of(r, pos);
        /* Acquire: the receive that freed the slot is done with it. */
        size_t stamp =
            atomic_load_explicit(stamp_of(slot), memory_order_acquire);
        if (stamp == lap) {
            /* The flags go along unchanged: a CAS that would drop one
             * set meanwhile fails instead. */
            size_t next = next_pos(r, pos) | (tail & CHAN_RING_FLAGS);
            if (claim(&r->tail, &tail, next)) {
                chan__copy_elem(slot + sizeof(size_t), elem, r->elem_size);
                atomic_store_explicit(stamp_of(slot), lap + 1,
                                      memory_order_release);
                return 1;
            }
            spin(&step); /* tail was reloaded by the failed CAS */
            continue;
        }
        if (stamp + r->one_lap == lap + 1) {
            /* The slot still holds the value sent one lap ago: the ring
             * is full, unless its receive is in progress. */
            size_t head = CHAN_RING_POS(
                atomic_load_explicit(&r->head, memory_order_acquire));
            if (head + r->one_lap == pos)
                return 0;
        }
        /* A receive in progress, or tail is stale. */
        backoff(&step);
        tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
    }
}

int chan__ring_recv(chan__ring_t *r, void *elem, int locked)
{
    if (!r->elem_size)
        return count_recv(r, locked);
    unsigned step = 0;
    size_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    for (;;) {
        if ((head & CHAN_RING_WAIT) && !locked)
            return CHAN_RING_BUSY;
        size_t pos = CHAN_RING_POS(head);
        unsigned char *slot = slot_at(r, pos);
        size_t lap = lap_of(r, pos);
        /* Acquire: the sender's copy is visible once its stamp is. */
        size_t stamp =
            atomic_load_explicit(stamp_of(slot), memory_order_acquire);
        if (stamp == lap + 1) {
            size_t next = next_pos(r, pos) | (head & CHAN_RING_FLAGS);
            if (claim(&r->head, &head, next)) {
                if (elem)
                    chan__copy_elem(elem, slot + sizeof(size_t), r->elem_size);
                atomic_store_explicit(stamp_of(slot), lap + r->one_lap,
                                      memory_order_release);
                return 1;
            }
            spin(&step);
            continue;
        }
        if (stamp == lap) {
            /* Not filled yet: empty, unless a send is in progress.
             * Acquire: a close seen here happened before we return. */
            size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
            if (CHAN_RING_POS(tail) == pos)
                return (tail & CHAN_RING_CLOSED) ? -EPIPE : 0;
        }
        backoff(&step);
        head = atomic_load_explicit(&r->head, memory_order_relaxed);
    }
}

void chan__ring_close(chan__ring_t *r)
{
    atomic_fetch_or_explicit(&r->tail, CHAN_RING_CLOSED, memory_order_release);
}

/* Sets (on) or clears RING_WAIT in *word. */
static void set_wait(_Atomic size_t *word, int on)
{
    /* Relaxed: what matters is that the word changes, which fails every
     * lock-free CAS that read it before; the lock orders the rest. */
    if (on)
        atomic_fetch_or_explicit(word, CHAN_RING_WAIT, memory_order_relaxed);
    else
        atomic_fetch_and_explicit(word, ~CHAN_RING_WAIT, memory_order_relaxed);
}

void chan__ring_freeze(chan__ring_t *r, int level)
{
    int was = r->frozen;
    if (was == level)
        return;
    r->frozen = level;
    if ((was >= CHAN_FROZEN_TAIL) != (level >= CHAN_FROZEN_TAIL))
        set_wait(&r->tail, level >= CHAN_FROZEN_TAIL);
    if ((was == CHAN_FROZEN_BOTH) != (level == CHAN_FROZEN_BOTH))
        set_wait(&r->head, level == CHAN_FROZEN_BOTH);
}

size_t chan__ring_len(chan__ring_t *r)
{
    for (;;) {
        size_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
        size_t head = atomic_load_explicit(&r->head, memory_order_acquire);
        /* A consistent pair: tail did not move while head was read. */
        if (CHAN_RING_POS(atomic_load_explicit(
                &r->tail, memory_order_acquire)) != CHAN_RING_POS(tail))
            continue;
        tail = CHAN_RING_POS(tail);
        head = CHAN_RING_POS(head);
        if (!r->elem_size)
            return tail - head;
        size_t hix = head & (r->one_lap - 1);
        size_t tix = tail & (r->one_lap - 1);
        if (hix < tix)
            return tix - hix;
        if (hix > tix)
            return r->cap - hix + tix;
        return tail == head ? 0 : r->cap;
    }
}
