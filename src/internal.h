/*
 * internal.h - what every source file of libchan includes first: feature
 * macros, which sanitizer the code is compiled for, the assertion that stays
 * on in every build, the errno save and restore, the export marker, the
 * spin-wait hint and the one table of lock order.
 *
 * Lock order.  A thread may hold several of these at once only in the order
 * given, top to bottom, and releases them in reverse:
 *
 *   1. the timer heap lock (timer.c) and the signal registry lock
 *      (signal.c): their threads fire timers and relay signals with it
 *      held, which takes channel locks below it;
 *   2. channel mutexes (chan.lock), in ascending address order, each at most
 *      once (chan_select locks all of its channels this way; every other
 *      path holds at most one channel lock);
 *   3. leaf locks, under which nothing else is taken: a parker's mutex
 *      (park.c), a wait group's mutex (wg.c), the scheduler's run-queue and
 *      idle locks (sched/), a task's timed-park lock (task->tlock, taken
 *      by the timer thread under the timer heap lock and by the task's
 *      worker, sched/task.c), the helper pool's lock (blocking.c), a
 *      descriptor's lock (pd->lock, netpoll.c) and the poller's start lock
 *      (netpoll.c).
 *
 * Unparking is done after dropping channel locks, so it adds no edge from
 * 2 to 3 beyond the ones listed.
 *
 * chan_sched_dump takes no lock at all (src/sched/dump.c): it reads the
 * task structs, which live until chan_sched_free, through atomics only,
 * so it may be called holding any of these, from a task, and may block in
 * write(2) without stalling the scheduler.  The deadlock monitor thread
 * takes its own mon_mu, the timer heap lock and the signal registry lock
 * one at a time, never two at once.
 *
 * No lock is ever held across a park: a waiter is published under the
 * channel lock, the lock is dropped, then the waiter parks.
 */
#ifndef CHAN_INTERNAL_H
#define CHAN_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "chan.h"

/*
 * Sanitizers.  CHAN_TSAN and CHAN_ASAN turn on the annotations that tell
 * ThreadSanitizer and AddressSanitizer about task stack switches (sched/):
 * without them either one crashes at the first switch.  They are asked of
 * the compiler, not of configure, so they are right however the sanitizer
 * was turned on: configure's --enable-tsan or --enable-asan, or the user's
 * own CFLAGS (-fsanitize=thread, -fsanitize=address).  GCC says so with
 * __SANITIZE_THREAD__ and __SANITIZE_ADDRESS__, clang with __has_feature.
 * Every file that tests them includes this header first.
 */
#if defined(__SANITIZE_THREAD__)
#define CHAN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define CHAN_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CHAN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHAN_ASAN 1
#endif
#endif

/*
 * Thread-local variables of the library use the initial-exec model, so that
 * reading one is a single load instead of a call to __tls_get_addr (which
 * the default model costs in a shared library).  They are few and small.
 */
#define CHAN_TLS __thread __attribute__((tls_model("initial-exec")))

/* Marks non-static internals; they are hidden by -fvisibility=hidden. */
#define CHAN_INTERNAL __attribute__((visibility("hidden")))

#define CHAN_LIKELY(x)   __builtin_expect(!!(x), 1)
#define CHAN_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* Kept out of line: see "errno" below (a function that touches errno is
 * never inlined into one that parks). */
#define CHAN_NOINLINE __attribute__((noinline))

/*
 * chan__assert - check an invariant in every build; a broken invariant
 * (a failed unlock, a corrupted queue) aborts with file and line.  Bad input
 * from the caller is never checked this way: it returns -EINVAL.
 */
#define chan__assert(x)                                                       \
    do {                                                                      \
        if (CHAN_UNLIKELY(!(x))) {                                            \
            fprintf(stderr, "libchan: assertion failed: %s (%s:%d)\n", #x,    \
                    __FILE__, __LINE__);                                      \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* pthread calls that can only fail by misuse: abort if they do. */
#define chan__check(call) chan__assert((call) == 0)

/*
 * errno.  No function of the API reads or writes errno (chan.h), but the C
 * library sets it when a call fails and may even change it when one
 * succeeds.  So every stretch of library code that calls into it (malloc,
 * calloc, realloc, mmap, pipe, fcntl, sigaction, pthread_create, syscall,
 * sysconf, nanosleep, ...) is bracketed, on every path out of the stretch:
 *
 *     int saved_errno = chan__errno_save();
 *     void *p = malloc(n);
 *     chan__errno_restore(saved_errno);
 *
 * The compiler barriers are what make this work everywhere.  Clang knows
 * malloc, calloc and realloc as functions that touch only memory of their
 * own, so without them it concludes that errno cannot have changed and
 * drops the restore as a store of the value already there (GCC knows that
 * they may set errno, which is why the plain pair worked with it).  With a
 * memory clobber on each side the load stays before the call and the store
 * after it.  The calls bracketed are slow anyway; the barriers cost nothing
 * measurable next to them.
 *
 * A bracket never spans a park, a yield or a task switch: a task may resume
 * on another thread, whose errno is another variable, and the compiler may
 * keep the address of the first thread's errno (__errno_location() is
 * declared const).  That holds for the whole function the bracket ends up
 * in, after inlining, not just for the bracket: clang computes the address
 * once at the top of a function and keeps it across every call in it, a
 * park included.  So a function that touches errno and is called in a loop
 * that parks (the tries of io.c) is CHAN_NOINLINE: each call takes the
 * address of the errno of the thread it runs on.  Code between the two
 * calls may read errno, as a check of why a call failed.  free() is not bracketed: it leaves errno alone
 * (glibc since 2.33, musl; POSIX.1-2024 requires it).
 */
static inline int chan__errno_save(void)
{
    int e = errno;
    __asm__ __volatile__("" ::: "memory");
    return e;
}

static inline void chan__errno_restore(int e)
{
    __asm__ __volatile__("" ::: "memory");
    errno = e;
}

/* chan__cpu_relax - a spin-wait hint to the CPU. */
static inline void chan__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#else
    __asm__ __volatile__("" ::: "memory");
#endif
}

/*
 * chan__copy_elem - copy an element of n bytes.  Elements of 8 bytes (a
 * pointer, an int64_t, a double: most channels carry one of those) are
 * copied inline, without a call into the C library's memcpy.
 */
static inline void chan__copy_elem(void *dst, const void *src, size_t n)
{
    if (n == 8)
        __builtin_memcpy(dst, src, 8);
    else
        __builtin_memcpy(dst, src, n);
}

/* Size of a cache line, for keeping hot fields of different writers apart. */
#define CHAN_CACHELINE 64

/*
 * chan__thread_name - name the calling thread (at most 15 characters), for
 * debuggers and /proc/PID/task/TID/comm; every thread of the library's
 * is named "chan-" and what it does.
 */
CHAN_INTERNAL void chan__thread_name(const char *name);

/*
 * chan__thread_start_quiet - start fn(arg) on a detached thread with every
 * signal blocked (thread.c).  Returns 0 or -ENOMEM.
 */
CHAN_INTERNAL int chan__thread_start_quiet(void *(*fn)(void *), void *arg);

/*
 * chan__signal_watching - 1 if some channel watches a signal (signal.c),
 * else 0.  Takes the signal registry lock.
 */
CHAN_INTERNAL int chan__signal_watching(void);

#define chan__container_of(ptr, type, member)                                 \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#endif /* CHAN_INTERNAL_H */
