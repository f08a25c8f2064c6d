/*
 * stack.h - task stacks: mmap'ed, a guard region below each, and a
 * bounded cache of stacks of finished tasks.
 *
 * A stack is named by the low end of its usable part; the guard region
 * (chan__stack_guard() bytes that fault on any access) sits right below
 * it, so a task that overflows its stack faults instead of silently
 * writing over whatever the kernel mapped next.  All stacks of a cache
 * have one size (a scheduler's stack_size, a whole number of pages).
 * Stacks are mapped in batches, several guard-and-stack pairs in one
 * mapping, and freed one by one.
 *
 * The top CHAN_STACK_RESERVED bytes of every stack hold a small node of
 * the cache's (the link while cached; valgrind's id and TSan's fiber
 * always); a task runs on the rest.  A cache has no lock of its own: a
 * worker's cache is touched only by its worker thread, the scheduler's
 * shared cache only under the scheduler's stack lock (sched.h).
 */
#ifndef CHAN_SCHED_STACK_H
#define CHAN_SCHED_STACK_H

#include <stddef.h>

#include "internal.h"

/* Most stacks chan__stack_new maps at once, and how many a worker's
 * first batch has (its batches double from there, stack.c). */
#define CHAN_STACK_BATCH_MAX 64
#define CHAN_STACK_BATCH_FIRST 16

/* Bytes at the top of each stack that a task must not use. */
#define CHAN_STACK_RESERVED 64

typedef struct chan__stack_cache {
    void *head;       /* newest cached stack (its low end), NULL if none */
    unsigned n;       /* stacks cached */
    unsigned max;     /* the bound: a put beyond it is refused */
} chan__stack_cache_t;

/* Stacks whose memory is discarded in one go (one system call). */
#define CHAN_STACK_DISCARD 64

/* A stack that has waited this long in a pool for its discard is
 * discarded by the next task that finishes, even if no worker is idle. */
#define CHAN_STACK_STALE_NS ((int64_t)50 * 1000 * 1000)

/*
 * A pool of stacks beyond the caches.  Cold ones had their memory given
 * back to the kernel (their pages are discarded; the mapping and the guard
 * stay), so they cost address space only; the others wait for that
 * discard, which is left to idle workers (chan__stack_trim) so that a
 * burst of finishing tasks does not pay for it, and whose pages the next
 * burst of starting tasks finds still there.  Unbounded; entries live in
 * an array outside the stacks: v[0 .. ncold-1] are cold, v[ncold .. n-1]
 * wait, oldest first.  waiting mirrors n - ncold for readers without the
 * lock.  Lock: the owner's (the scheduler's stack lock).
 */
typedef struct chan__stack_pool {
    struct chan__stack_cold *v;
    size_t n, ncold, cap;
    size_t waiting; /* read and written with __atomic builtins */
} chan__stack_pool_t;

/* chan__page_size - the system page size (cached after the first call). */
CHAN_INTERNAL size_t chan__page_size(void);

/* The guard region below each stack is at least this large (stack.c). */
#define CHAN_STACK_GUARD_MIN ((size_t)64 * 1024)

/* chan__stack_guard - bytes of guard below each stack: CHAN_STACK_GUARD_MIN
 * rounded up to whole pages. */
CHAN_INTERNAL size_t chan__stack_guard(void);

/*
 * chan__stack_new - map up to n (>= 1) stacks of size bytes (a multiple of
 * the page size), each with its guard region below it, in one mapping,
 * and store their low ends in out[].  Returns how many it made (>= 1), or
 * when it made none mmap's or mprotect's negative errno (-ENOMEM when
 * memory or the kernel's mapping count runs out).
 */
CHAN_INTERNAL int chan__stack_new(size_t size, void **out, unsigned n);

/* chan__stack_batch - the most stacks of size bytes chan__stack_new should
 * map at once (1 for big stacks). */
CHAN_INTERNAL unsigned chan__stack_batch(size_t size);

/* chan__stack_fiber - the ThreadSanitizer fiber of a stack (NULL without
 * TSan): it lives as long as the stack. */
CHAN_INTERNAL void *chan__stack_fiber(void *lo, size_t size);

/* chan__stack_free - unmap a stack from chan__stack_new (each one of a
 * batch on its own). */
CHAN_INTERNAL void chan__stack_free(void *lo, size_t size);

/* chan__stack_get - a cached stack ready for a new task, or NULL. */
CHAN_INTERNAL void *chan__stack_get(chan__stack_cache_t *c, size_t size);

/* chan__stack_put - cache lo; returns 0 if the cache is full (then the
 * caller keeps lo). */
CHAN_INTERNAL int chan__stack_put(chan__stack_cache_t *c, void *lo,
                                  size_t size);

/* chan__stack_drain - move every stack of c to p, for
 * chan__stack_pool_drain to unmap them with its neighbours. */
CHAN_INTERNAL void chan__stack_drain(chan__stack_cache_t *c,
                                     chan__stack_pool_t *p, size_t size);

/* chan__stack_cool - keep lo in p, to wait for its discard (and discard
 * the CHAN_STACK_DISCARD oldest waiting ones if they have waited for
 * CHAN_STACK_STALE_NS); returns 0 if p cannot grow (then the caller keeps
 * lo). */
CHAN_INTERNAL int chan__stack_cool(chan__stack_pool_t *p, void *lo,
                                   size_t size);

/* chan__stack_pool_waiting - how many stacks of p wait for their discard
 * (read without the lock: a hint). */
static inline size_t chan__stack_pool_waiting(chan__stack_pool_t *p)
{
    return __atomic_load_n(&p->waiting, __ATOMIC_RELAXED);
}

/* chan__stack_fresh - keep lo, a stack whose memory was never touched, in
 * p among the cold ones; returns 0 if p cannot grow. */
CHAN_INTERNAL int chan__stack_fresh(chan__stack_pool_t *p, void *lo,
                                    size_t size);

/* chan__stack_warm - a stack of p ready for a new task, or NULL.  Its
 * memory comes back (zeroed) as the task touches it. */
CHAN_INTERNAL void *chan__stack_warm(chan__stack_pool_t *p, size_t size);

/* chan__stack_pool_drain - unmap every stack of p and free its array. */
CHAN_INTERNAL void chan__stack_pool_drain(chan__stack_pool_t *p, size_t size);

#endif /* CHAN_SCHED_STACK_H */
