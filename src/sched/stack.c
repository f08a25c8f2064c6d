/*
 * stack.c - task stacks, their caches and the scheduler's stack policy
 * (stack.h for the stacks and caches, sched.h for the policy): which
 * cache a task's stack comes from and goes back to, and the tasks that
 * wait for a stack when none can be mapped.
 *
 * Why a guard region: a task stack is small (64 KiB by default) and
 * nothing checks its depth, so a deep recursion would run into the
 * neighbouring mapping, often another task's stack of the same batch, and
 * corrupt it silently.  Pages below the stack that fault on any access
 * turn that into an immediate SIGSEGV at the faulting instruction.  Why
 * 64 KiB of them, not one page: a function allocates its whole frame at
 * once and its first store may go anywhere in it (a call pushes its
 * return address at the very bottom), so a frame larger than the guard
 * can land beyond it.  Frames of a few KiB are common (glibc's printf on
 * an unbuffered stream takes 8 KiB), and code built without
 * -fstack-clash-protection touches a frame of up to the guard's size
 * first inside the guard.  With that option x86-64 probes every 4 KiB of
 * a large frame and AArch64 every 64 KiB, so a 64 KiB guard catches every
 * frame of such code, however large.  The guard costs address space, no
 * memory: the pages are never populated.
 *
 * Why a cache: mmap, mprotect and munmap each take the process's mapping
 * lock and cost a few microseconds; programs that start many short tasks
 * would spend their time there.  A finished task's stack goes to a cache
 * instead, up to a bound, and the next task takes it.  New stacks are
 * mapped in batches (one mmap for several stacks, the rest going to the
 * cache), and the guard regions are made with MADV_GUARD_INSTALL where
 * the kernel has it, so a batch remains one mapping (neighbouring batches
 * even merge): this keeps a program with 100,000 parked tasks well under
 * the kernel's limit on mappings per process, which an mprotect'ed guard
 * per stack (two mappings per stack) would exceed at about 32,000.
 *
 * Beyond the caches, a finished task's stack goes to the cold pool, which
 * keeps the mapping and gives the memory back to the kernel
 * (MADV_DONTNEED).  Not at once: a burst of tasks that finish would pay
 * for it (the discard interrupts the other CPUs that may cache the pages
 * in their TLBs, and zeroes what is touched again), and the next burst
 * would fault every page in again.  A worker about to sleep discards the
 * stacks waiting in the pool first (chan__stack_trim, a batch at a time,
 * looking for work in between); a stack that has waited for
 * CHAN_STACK_STALE_NS is discarded by the next task that finishes, so
 * that workers that never idle do not keep the memory forever.
 *
 * A new stack's pages are left to fault in as the task touches them.
 * Populating the top page of each stack of a batch ahead, with one
 * process_madvise(MADV_POPULATE_WRITE) call, looks cheaper than 16 page
 * faults but is not: the call walks the pages through get_user_pages and
 * drains the LRU lists while holding the mapping lock that the other
 * workers' mmap and guard calls wait for, whereas a fault takes only a
 * lock on its own mapping.  Starting 10,000 tasks that block (the w5
 * ring) took about 3,500 ns per task with it and 2,500 without.
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

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

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

#include "clock.h"
#include "sched/sched.h"
#include "sched/stack.h"

#ifndef MAP_STACK
#define MAP_STACK 0
#endif
/* Older C library headers lack these; the kernel's values (the same on
 * every architecture). */
#ifdef __linux__
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef PIDFD_SELF_PROCESS
#define PIDFD_SELF_PROCESS (-10001)
#endif
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
        int saved_errno = chan__errno_save();
        long v = sysconf(_SC_PAGESIZE);
        chan__errno_restore(saved_errno);
        p = v > 0 ? (size_t)v : 4096;
        __atomic_store_n(&page_size_cached, p, __ATOMIC_RELAXED);
    }
    return p;
}

_Static_assert(sizeof(struct node) <= CHAN_STACK_RESERVED,
               "the node must fit in the reserved bytes");

size_t chan__stack_guard(void)
{
    size_t page = chan__page_size();
    return (CHAN_STACK_GUARD_MIN + page - 1) / page * page;
}

static struct node *node_of(void *lo, size_t size)
{
    return (struct node *)((char *)lo + size) - 1;
}

/* How guard regions are made, best first; guard_way remembers the best one
 * the kernel accepted (GUARD_UNKNOWN: not tried yet). */
enum { GUARD_UNKNOWN, GUARD_VECTOR, GUARD_MADVISE, GUARD_MPROTECT };
static int guard_way;

/*
 * Whether the page at p really faults.  Asked once, of the top page of the
 * first region that MADV_GUARD_INSTALL claims to have guarded (the page an
 * overflow reaches first): an emulator such as qemu-user
 * accepts the advice and does nothing.  The kernel reads p to write it to a
 * pipe, and fails with EFAULT on a guard page.  If the question cannot be
 * asked (no pipe), the answer is yes.
 */
static int guard_faults(const char *p)
{
#ifdef CHAN_VALGRIND
    if (RUNNING_ON_VALGRIND)
        return 1; /* it would report the read of an unwritten page */
#endif
    int saved_errno = chan__errno_save(), fds[2], faults = 1;
    if (pipe2(fds, O_CLOEXEC) == 0) {
        faults = write(fds[1], p, 1) < 0 && errno == EFAULT;
        close(fds[0]);
        close(fds[1]);
    }
    chan__errno_restore(saved_errno);
    return faults;
}

/*
 * Makes the first gsz bytes of each of the n stack slots at base (one
 * apart) a guard region; returns how many leading slots have theirs (n on
 * success).
 *
 * Preferably with MADV_GUARD_INSTALL (Linux 6.13): the kernel marks the
 * pages in the page table and the mapping stays in one piece.  All n at
 * once through process_madvise on the calling process (recent kernels let
 * a process name itself, PIDFD_SELF, without opening a pidfd), else one
 * madvise each.  The first success is checked (guard_faults): a system
 * that accepts the advice without doing it gets mprotect instead.  Without
 * it, mprotect, which splits the mapping: every stack then costs two of
 * the kernel's mappings, of which a process may have vm.max_map_count
 * (65530 by default).  Either way the cost hardly depends on the size of
 * the region.
 */
static unsigned guard(char *base, size_t one, size_t gsz, unsigned n)
{
    int way = __atomic_load_n(&guard_way, __ATOMIC_RELAXED);
#ifdef CHAN_VALGRIND
    if (way == GUARD_UNKNOWN && RUNNING_ON_VALGRIND)
        way = GUARD_MADVISE; /* it does not know process_madvise */
#endif
    unsigned i = 0;
    const char *probe = base + gsz - chan__page_size();
    (void)probe;
#if defined(__linux__) && defined(SYS_process_madvise)
    if (way <= GUARD_VECTOR) {
        struct iovec iov[CHAN_STACK_BATCH_MAX];
        for (unsigned k = 0; k < n; k++) {
            iov[k].iov_base = base + k * one;
            iov[k].iov_len = gsz;
        }
        long done = syscall(SYS_process_madvise, PIDFD_SELF_PROCESS, iov,
                            (size_t)n, MADV_GUARD_INSTALL, 0u);
        if (done == (long)(n * gsz)) {
            if (way == GUARD_VECTOR)
                return n;
            if (guard_faults(probe)) {
                __atomic_store_n(&guard_way, GUARD_VECTOR, __ATOMIC_RELAXED);
                return n;
            }
            /* accepted, but not done */
            __atomic_store_n(&guard_way, GUARD_MPROTECT, __ATOMIC_RELAXED);
            way = GUARD_MPROTECT;
        }
        /* Refused (an older kernel: EINVAL, EBADF, ENOSYS, EPERM), or
         * partly done: the one-by-one ways below redo it harmlessly, and
         * the first that works is remembered. */
    }
#endif
#ifdef MADV_GUARD_INSTALL
    if (way <= GUARD_MADVISE) {
        for (; i < n; i++)
            if (madvise(base + i * one, gsz, MADV_GUARD_INSTALL) != 0)
                break;
        if (i == n) {
            if (way == GUARD_MADVISE || guard_faults(probe)) {
                __atomic_store_n(&guard_way, GUARD_MADVISE, __ATOMIC_RELAXED);
                return n;
            }
            i = 0; /* accepted, but not done */
            __atomic_store_n(&guard_way, GUARD_MPROTECT, __ATOMIC_RELAXED);
        } else if (errno == EINVAL && i == 0) {
            /* An older kernel (or a tool that does not know the advice).
             * Anything else: try mprotect for the rest, this time. */
            __atomic_store_n(&guard_way, GUARD_MPROTECT, __ATOMIC_RELAXED);
        }
    }
#endif
    for (; i < n; i++)
        if (mprotect(base + i * one, gsz, PROT_NONE) != 0)
            break;
    return i;
}

/* Set up the node of a new stack for the tools that watch stacks. */
static void *stack_init(char *lo, size_t size)
{
#ifdef CHAN_VALGRIND
    node_of(lo, size)->vg = VALGRIND_STACK_REGISTER(lo, lo + size);
#endif
#ifdef CHAN_TSAN
    node_of(lo, size)->fiber = __tsan_create_fiber(0);
#endif
    (void)size;
    return lo;
}

unsigned chan__stack_batch(size_t size)
{
    /* Batches of up to 64 stacks, as long as a batch stays under 8 MiB
     * of address space. */
    size_t n = (size_t)8 << 20;
    n /= size + chan__stack_guard();
    return n < 1 ? 1
           : n > CHAN_STACK_BATCH_MAX ? CHAN_STACK_BATCH_MAX : (unsigned)n;
}

int chan__stack_new(size_t size, void **out, unsigned n)
{
    size_t gsz = chan__stack_guard();
    size_t one = size + gsz;
    int saved_errno = chan__errno_save();
    char *base = mmap(NULL, one * n, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (base == MAP_FAILED && n > 1) {
        n = 1;
        base = mmap(NULL, one, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    }
    if (base == MAP_FAILED) {
        int err = errno;
        chan__errno_restore(saved_errno);
        return err > 0 ? -err : -ENOMEM;
    }
    unsigned made = guard(base, one, gsz, n);
    int err = made ? 0 : errno;
    for (unsigned i = 0; i < made; i++)
        out[i] = stack_init(base + i * one + gsz, size);
    if (made < n && munmap(base + made * one, (n - made) * one) != 0)
        /* Out of mappings: what has no guard goes back, or at least its
         * memory does. */
        (void)madvise(base + made * one, (n - made) * one, MADV_DONTNEED);
    chan__errno_restore(saved_errno);
    if (made == 0)
        return err > 0 ? -err : -ENOMEM;
    return (int)made;
}

void *chan__stack_fiber(void *lo, size_t size)
{
    return node_of(lo, size)->fiber;
}

/* What the tools know of a stack about to be unmapped goes first. */
static void stack_fini(void *lo, size_t size, unsigned vg, void *fiber)
{
#ifdef CHAN_TSAN
    __tsan_destroy_fiber(fiber);
#endif
#ifdef CHAN_VALGRIND
    VALGRIND_STACK_DEREGISTER(vg);
#endif
#ifdef CHAN_ASAN
    /* A later mapping at this address must not inherit stale redzones. */
    ASAN_UNPOISON_MEMORY_REGION(lo, size);
#endif
    (void)lo, (void)size, (void)vg, (void)fiber;
}

void chan__stack_free(void *lo, size_t size)
{
    stack_fini(lo, size, node_of(lo, size)->vg, node_of(lo, size)->fiber);
    size_t gsz = chan__stack_guard();
    int saved_errno = chan__errno_save();
    if (munmap((char *)lo - gsz, size + gsz) != 0)
        /* Unmapping a stack from the middle of a batch splits the
         * mapping, which fails once the process has too many: then give
         * the memory back and keep the address range (and guard). */
        (void)madvise(lo, size, MADV_DONTNEED);
    chan__errno_restore(saved_errno);
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


/* ---------------------------------------------------------------- cold */

/* A stack of a pool, with a copy of its node (whose page is discarded),
 * and when it came to the pool. */
struct chan__stack_cold {
    void *lo;
    unsigned vg;
    void *fiber;
    int64_t since;
};

static void pool_count(chan__stack_pool_t *p)
{
    __atomic_store_n(&p->waiting, p->n - p->ncold, __ATOMIC_RELAXED);
}

/* process_madvise on the calling process: 1 works, -1 refused, 0 unknown. */
static int vector_state;

/*
 * Discards the pages of n stacks (their memory goes back to the kernel,
 * reading back as zeroes; the guard pages stay guards).  In one call where
 * the kernel takes a vector of ranges for the calling process: discarding
 * memory that another thread may have cached in its TLB interrupts that
 * thread's CPU, which costs several microseconds (more in a virtual
 * machine), and one call pays that once for the whole vector.
 */
static void discard(struct chan__stack_cold *v, size_t n, size_t size)
{
    int saved_errno = chan__errno_save();
#ifdef CHAN_VALGRIND
    if (RUNNING_ON_VALGRIND)
        __atomic_store_n(&vector_state, -1, __ATOMIC_RELAXED);
#endif
#if defined(__linux__) && defined(SYS_process_madvise)
    if (__atomic_load_n(&vector_state, __ATOMIC_RELAXED) >= 0) {
        struct iovec iov[CHAN_STACK_DISCARD];
        for (size_t i = 0; i < n; i++) {
            iov[i].iov_base = v[i].lo;
            iov[i].iov_len = size;
        }
        long done = syscall(SYS_process_madvise, PIDFD_SELF_PROCESS, iov, n,
                            MADV_DONTNEED, 0u);
        if (done == (long)(n * size)) {
            __atomic_store_n(&vector_state, 1, __ATOMIC_RELAXED);
            chan__errno_restore(saved_errno);
            return;
        }
        if (done < 0 && __atomic_load_n(&vector_state, __ATOMIC_RELAXED) == 0)
            __atomic_store_n(&vector_state, -1, __ATOMIC_RELAXED);
    }
#endif
    (void)vector_state;
    for (size_t i = 0; i < n; i++)
        (void)madvise(v[i].lo, size, MADV_DONTNEED);
    chan__errno_restore(saved_errno);
}

/* Room for k more entries in p; 0 if p cannot grow. */
static int pool_room(chan__stack_pool_t *p, size_t k)
{
    if (p->n + k <= p->cap)
        return 1;
    size_t cap = p->cap ? p->cap : 4 * CHAN_STACK_DISCARD;
    while (cap < p->n + k)
        cap *= 2;
    int saved_errno = chan__errno_save();
    struct chan__stack_cold *v = realloc(p->v, cap * sizeof *v);
    chan__errno_restore(saved_errno);
    if (!v)
        return 0;
    p->v = v;
    p->cap = cap;
    return 1;
}

/* Appends lo to p (still warm, waiting for its discard); 0 if p cannot
 * grow. */
static int pool_add(chan__stack_pool_t *p, void *lo, size_t size,
                    int64_t now)
{
    if (!pool_room(p, 1))
        return 0;
    struct node *nd = node_of(lo, size);
#ifdef CHAN_ASAN
    ASAN_UNPOISON_MEMORY_REGION(lo, size);
#endif
    p->v[p->n++] = (struct chan__stack_cold){ lo, nd->vg, nd->fiber, now };
    pool_count(p);
    return 1;
}

int chan__stack_cool(chan__stack_pool_t *p, void *lo, size_t size)
{
    int64_t now = chan__now();
    if (!pool_add(p, lo, size, now))
        return 0;
    /* Nobody idle has discarded the oldest ones for a while (the workers
     * are busy, or there are far more stacks than tasks): do it here. */
    if (p->n - p->ncold >= CHAN_STACK_DISCARD &&
        now - p->v[p->ncold + CHAN_STACK_DISCARD - 1].since >=
            CHAN_STACK_STALE_NS) {
        discard(p->v + p->ncold, CHAN_STACK_DISCARD, size);
        p->ncold += CHAN_STACK_DISCARD;
        pool_count(p);
    }
    return 1;
}

int chan__stack_fresh(chan__stack_pool_t *p, void *lo, size_t size)
{
    if (!pool_room(p, 1))
        return 0;
    /* Its node is not read: that would map the page (the kernel's zero
     * page, then a copy-on-write fault and a TLB flush on every CPU at
     * the first write).  Only the tools that watch stacks wrote to it. */
    struct chan__stack_cold c = { lo, 0, NULL, 0 };
#if defined(CHAN_VALGRIND) || defined(CHAN_TSAN)
    c.vg = node_of(lo, size)->vg;
    c.fiber = node_of(lo, size)->fiber;
#endif
    (void)size;
    /* Nothing to discard: it joins the cold ones at once, and the first
     * waiting one (if any) moves to the end. */
    if (p->n > p->ncold)
        p->v[p->n] = p->v[p->ncold];
    p->n++;
    p->v[p->ncold++] = c;
    pool_count(p);
    return 1;
}

void *chan__stack_warm(chan__stack_pool_t *p, size_t size)
{
    if (p->n == 0)
        return NULL;
    /* The newest first: not discarded yet, if there are such. */
    struct chan__stack_cold c = p->v[--p->n];
    if (p->ncold > p->n)
        p->ncold = p->n;
    pool_count(p);
    struct node *nd = node_of(c.lo, size);
    nd->vg = c.vg;
    nd->fiber = c.fiber;
    return c.lo;
}

void chan__stack_drain(chan__stack_cache_t *c, chan__stack_pool_t *p,
                       size_t size)
{
    void *lo;
    while ((lo = chan__stack_get(c, size)) != NULL)
        if (!pool_add(p, lo, size, 0))
            chan__stack_free(lo, size);
}

static int cold_cmp(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t)((const struct chan__stack_cold *)a)->lo;
    uintptr_t y = (uintptr_t)((const struct chan__stack_cold *)b)->lo;
    return x < y ? -1 : x > y;
}

void chan__stack_pool_drain(chan__stack_pool_t *p, size_t size)
{
    /* Neighbours (most stacks of a batch) go in one munmap: by address,
     * then runs of adjacent guard-and-stack pairs. */
    size_t gsz = chan__stack_guard();
    if (p->n > 1)
        qsort(p->v, p->n, sizeof *p->v, cold_cmp);
    size_t i = 0;
    while (i < p->n) {
        size_t j = i;
        for (;;) {
            stack_fini(p->v[j].lo, size, p->v[j].vg, p->v[j].fiber);
            if (j + 1 < p->n &&
                (char *)p->v[j + 1].lo == (char *)p->v[j].lo + size + gsz)
                j++;
            else
                break;
        }
        char *start = (char *)p->v[i].lo - gsz;
        size_t len = (j - i + 1) * (size + gsz);
        int saved_errno = chan__errno_save();
        if (munmap(start, len) != 0)
            (void)madvise(start + gsz, len - gsz, MADV_DONTNEED);
        chan__errno_restore(saved_errno);
        i = j + 1;
    }
    free(p->v);
    p->v = NULL;
    p->n = p->ncold = p->cap = 0;
    pool_count(p);
}

/* ---------------------------------------------------------------- policy */

void *chan__stack_take(chan__worker_t *w, int *err)
{
    chan_sched_t *s = w->sched;
    void *lo = chan__stack_get(&w->stacks, s->stack_size);
    if (lo)
        return lo;
    chan__check(pthread_mutex_lock(&s->stack_mu));
    lo = chan__stack_get(&s->stacks, s->stack_size);
    if (!lo)
        lo = chan__stack_warm(&s->cold, s->stack_size);
    chan__check(pthread_mutex_unlock(&s->stack_mu));
    if (lo)
        return lo;
    /*
     * Everything is taken: map a batch, keep one, cache the rest.  A
     * worker's first batch is small, so that a program that starts a few
     * tasks does not wait for 64 guard regions; each further batch is
     * twice as large, up to chan__stack_batch.  Large batches are what
     * lets two workers that both start tasks on new stacks do so in
     * parallel: mmap and the guard advice hold the process's mapping
     * lock, against which the other worker's page faults on new stacks
     * wait, and a larger batch takes that lock fewer times per stack.
     * What the worker's cache cannot hold goes to the shared cache and
     * then to the pool, as cold stacks (their pages were never touched):
     * the other workers take them from there.
     */
    void *batch[CHAN_STACK_BATCH_MAX];
    unsigned most = chan__stack_batch(s->stack_size);
    unsigned n = w->batch ? w->batch : CHAN_STACK_BATCH_FIRST;
    if (n > most)
        n = most;
    int made = chan__stack_new(s->stack_size, batch, n);
    if (made < 0) {
        *err = made;
        return NULL;
    }
    w->batch = n < most / 2 ? 2 * n : most;
    n = (unsigned)made;
    unsigned i = 1;
    while (i < n && chan__stack_put(&w->stacks, batch[i], s->stack_size))
        i++;
    if (i < n) {
        chan__check(pthread_mutex_lock(&s->stack_mu));
        for (; i < n; i++)
            if (!chan__stack_put(&s->stacks, batch[i], s->stack_size) &&
                !chan__stack_fresh(&s->cold, batch[i], s->stack_size))
                break;
        chan__check(pthread_mutex_unlock(&s->stack_mu));
        for (; i < n; i++) /* the pool cannot grow: out of memory */
            chan__stack_free(batch[i], s->stack_size);
    }
    return batch[0];
}

int chan__stack_trim(chan_sched_t *s)
{
    if (chan__stack_pool_waiting(&s->cold) == 0)
        return 0;
    /* The newest waiting ones, out of the pool while they are discarded
     * without the lock (so that nobody takes them meanwhile), then back
     * among the cold ones. */
    struct chan__stack_cold v[CHAN_STACK_DISCARD];
    size_t size = s->stack_size, k;
    chan__check(pthread_mutex_lock(&s->stack_mu));
    chan__stack_pool_t *p = &s->cold;
    k = p->n - p->ncold;
    if (k > CHAN_STACK_DISCARD)
        k = CHAN_STACK_DISCARD;
    p->n -= k;
    memcpy(v, p->v + p->n, k * sizeof *v);
    pool_count(p);
    chan__check(pthread_mutex_unlock(&s->stack_mu));
    if (k == 0)
        return 0;
    discard(v, k, size);
    chan__check(pthread_mutex_lock(&s->stack_mu));
    size_t kept = pool_room(p, k) ? k : 0;
    for (size_t i = 0; i < kept; i++) {
        /* v[i] joins the cold ones; the first waiting one moves up. */
        p->v[p->n] = p->v[p->ncold];
        p->v[p->ncold++] = v[i];
        p->n++;
    }
    pool_count(p);
    chan__check(pthread_mutex_unlock(&s->stack_mu));
    for (size_t i = kept; i < k; i++) {
        /* The pool cannot grow: these go back to the kernel whole. */
        stack_fini(v[i].lo, size, v[i].vg, v[i].fiber);
        int saved_errno = chan__errno_save();
        size_t gsz = chan__stack_guard();
        (void)munmap((char *)v[i].lo - gsz, size + gsz);
        chan__errno_restore(saved_errno);
    }
    return 1;
}

chan__task_t *chan__task_stack_waiter(chan_sched_t *s)
{
    if (chan__taskq_len(&s->swait) == 0)
        return NULL;
    chan__check(pthread_mutex_lock(&s->stack_mu));
    chan__task_t *t =
        chan__taskq_len(&s->swait) ? chan__taskq_take(&s->swait, 1) : NULL;
    chan__check(pthread_mutex_unlock(&s->stack_mu));
    return t;
}

void chan__stack_warn(chan_sched_t *s, int err)
{
    if (atomic_exchange_explicit(&s->stack_warned, 1, memory_order_relaxed))
        return;
    int saved_errno = chan__errno_save();
    const char *name = err == -ENOMEM ? "ENOMEM"
                       : err == -EAGAIN ? "EAGAIN"
                       : err == -EPERM  ? "EPERM"
                                        : NULL;
    char msg[160], code[24];
    if (!name) {
        snprintf(code, sizeof code, "errno %d", -err);
        name = code;
    }
    int len = snprintf(msg, sizeof msg,
                       "libchan: cannot map a task stack of %zu bytes (%s); "
                       "retrying\n",
                       s->stack_size, name);
    if (len > 0) {
        size_t n = (size_t)len < sizeof msg ? (size_t)len : sizeof msg - 1;
        ssize_t rc = write(STDERR_FILENO, msg, n);
        (void)rc; /* nothing to do if standard error is gone */
    }
    chan__errno_restore(saved_errno);
}

void chan__stack_wait(chan_sched_t *s, chan__task_t *t)
{
    chan__check(pthread_mutex_lock(&s->stack_mu));
    chan__taskq_append(&s->swait, t, t, 1);
    chan__check(pthread_mutex_unlock(&s->stack_mu));
}

chan__task_t *chan__stack_give(chan__worker_t *w, void *lo)
{
    chan_sched_t *s = w->sched;
    /* A task waiting for a stack gets this one: its caller runs it next
     * there, where it finds lo at the top of the worker's cache.  (A
     * waiter that comes just after this check waits for the next stack,
     * or the retry.) */
    chan__task_t *waiter = CHAN_UNLIKELY(chan__taskq_len(&s->swait) != 0)
                               ? chan__task_stack_waiter(s)
                               : NULL;
    if (chan__stack_put(&w->stacks, lo, s->stack_size))
        return waiter;
    /* Beyond the caches the stack goes cold rather than being unmapped:
     * unmapping one stack of a batch splits the kernel's mapping, which
     * costs several times more, and the next burst of tasks needs the
     * stacks again. */
    chan__check(pthread_mutex_lock(&s->stack_mu));
    int kept = chan__stack_put(&s->stacks, lo, s->stack_size) ||
               chan__stack_cool(&s->cold, lo, s->stack_size);
    chan__check(pthread_mutex_unlock(&s->stack_mu));
    if (!kept)
        chan__stack_free(lo, s->stack_size);
    return waiter;
}
