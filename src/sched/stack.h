/*
 * stack.h - task stacks: mmap'ed, a guard page below each, and a bounded
 * cache of stacks of finished tasks.
 *
 * A stack is named by the low end of its usable part; the PROT_NONE guard
 * page sits right below it, so a task that overflows its stack faults
 * instead of silently writing over whatever the kernel mapped next.  All
 * stacks of a cache have one size (a scheduler's stack_size, a whole number
 * of pages).
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

/* Bytes at the top of each stack that a task must not use. */
#define CHAN_STACK_RESERVED 64

typedef struct chan__stack_cache {
    void *head;       /* newest cached stack (its low end), NULL if none */
    unsigned n;       /* stacks cached */
    unsigned max;     /* the bound: a put beyond it is refused */
} chan__stack_cache_t;

/* chan__page_size - the system page size (cached after the first call). */
CHAN_INTERNAL size_t chan__page_size(void);

/*
 * chan__stack_new - map a stack of size bytes (a multiple of the page
 * size) with a guard page below it.  Returns its low end, or NULL when
 * memory (or the kernel's mapping count) runs out.
 */
CHAN_INTERNAL void *chan__stack_new(size_t size);

/* chan__stack_fiber - the ThreadSanitizer fiber of a stack (NULL without
 * TSan): it lives as long as the stack. */
CHAN_INTERNAL void *chan__stack_fiber(void *lo, size_t size);

/* chan__stack_free - unmap a stack from chan__stack_new. */
CHAN_INTERNAL void chan__stack_free(void *lo, size_t size);

/* chan__stack_get - a cached stack ready for a new task, or NULL. */
CHAN_INTERNAL void *chan__stack_get(chan__stack_cache_t *c, size_t size);

/* chan__stack_put - cache lo; returns 0 if the cache is full (then the
 * caller keeps lo). */
CHAN_INTERNAL int chan__stack_put(chan__stack_cache_t *c, void *lo,
                                  size_t size);

/* chan__stack_drain - unmap every cached stack. */
CHAN_INTERNAL void chan__stack_drain(chan__stack_cache_t *c, size_t size);

#endif /* CHAN_SCHED_STACK_H */
