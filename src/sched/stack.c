/*
 * stack.c - task stacks and their cache (see stack.h).
 *
 * Why a guard page: a task stack is small (64 KiB by default) and nothing
 * checks its depth, so a deep recursion would run into the neighbouring
 * mapping, perhaps another task's stack, and corrupt it silently.  A
 * PROT_NONE page below the stack turns that into an immediate SIGSEGV at
 * the faulting instruction.  (A frame larger than a page could still jump
 * over it; compilers' -fstack-clash-protection closes that hole.)
 *
 * Why a cache: mmap, mprotect and munmap each take the process's mapping
 * lock and cost a few microseconds; programs that start many short tasks
 * would spend their time there.  A finished task's stack goes to a cache
 * instead, up to a bound, and the next task takes it.
 *
 * Sanitizers and valgrind.  AddressSanitizer poisons the redzones of stack
 * frames and unpoisons them when the frame returns; a task that finishes
 * leaves its outermost frames poisoned, so a reused stack is unpoisoned
 * first.  Valgrind is told about every stack, or it takes a switch to
 * another stack for a huge stack-pointer change.
 */
#include "internal.h"

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef CHAN_ASAN
#include <sanitizer/asan_interface.h>
#endif
#ifdef CHAN_VALGRIND
#include <valgrind/valgrind.h>
#endif
#ifdef CHAN_TSAN
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
#endif

#include "sched/stack.h"

#ifndef MAP_STACK
#define MAP_STACK 0
#endif

/* The node every stack carries in its reserved top bytes: the cache's link,
 * valgrind's id for the stack (one registration per mapping) and, with
 * ThreadSanitizer, the fiber that runs on the stack.  Creating and
 * destroying a TSan fiber is expensive (it sets up a whole thread state),
 * so a fiber lives as long as its stack and serves every task that runs
 * on it, one after another. */
struct node {
    void *next;
    unsigned vg;
    void *fiber;
};

static size_t page_size_cached;

size_t chan__page_size(void)
{
    size_t p = __atomic_load_n(&page_size_cached, __ATOMIC_RELAXED);
    if (!p) {
        long v = sysconf(_SC_PAGESIZE);
        p = v > 0 ? (size_t)v : 4096;
        __atomic_store_n(&page_size_cached, p, __ATOMIC_RELAXED);
    }
    return p;
}

_Static_assert(sizeof(struct node) <= CHAN_STACK_RESERVED,
               "the node must fit in the reserved bytes");

static struct node *node_of(void *lo, size_t size)
{
    return (struct node *)((char *)lo + size) - 1;
}

void *chan__stack_new(size_t size)
{
    size_t page = chan__page_size();
    char *base = mmap(NULL, size + page, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    if (mprotect(base, page, PROT_NONE) != 0) {
        munmap(base, size + page);
        return NULL;
    }
    void *lo = base + page;
#ifdef CHAN_VALGRIND
    node_of(lo, size)->vg = VALGRIND_STACK_REGISTER(lo, (char *)lo + size);
#endif
#ifdef CHAN_TSAN
    node_of(lo, size)->fiber = __tsan_create_fiber(0);
#endif
    return lo;
}

void *chan__stack_fiber(void *lo, size_t size)
{
    return node_of(lo, size)->fiber;
}

void chan__stack_free(void *lo, size_t size)
{
#ifdef CHAN_TSAN
    __tsan_destroy_fiber(node_of(lo, size)->fiber);
#endif
#ifdef CHAN_VALGRIND
    VALGRIND_STACK_DEREGISTER(node_of(lo, size)->vg);
#endif
#ifdef CHAN_ASAN
    /* A later mapping at this address must not inherit stale redzones. */
    ASAN_UNPOISON_MEMORY_REGION(lo, size);
#endif
    size_t page = chan__page_size();
    chan__check(munmap((char *)lo - page, size + page));
}

void *chan__stack_get(chan__stack_cache_t *c, size_t size)
{
    void *lo = c->head;
    if (!lo)
        return NULL;
    c->head = node_of(lo, size)->next;
    c->n--;
    return lo;
}

int chan__stack_put(chan__stack_cache_t *c, void *lo, size_t size)
{
    if (c->n >= c->max)
        return 0;
#ifdef CHAN_ASAN
    ASAN_UNPOISON_MEMORY_REGION(lo, size);
#endif
    node_of(lo, size)->next = c->head;
    c->head = lo;
    c->n++;
    return 1;
}

void chan__stack_drain(chan__stack_cache_t *c, size_t size)
{
    void *lo;
    while ((lo = chan__stack_get(c, size)) != NULL)
        chan__stack_free(lo, size);
}
