/*
 * switch.h - the machine context of a task and the switch between two.
 *
 * configure picks one implementation:
 *   switch_x86_64.S   x86-64 System V: saves rbx, rbp, r12-r15, MXCSR and
 *                     the x87 control word on the old stack;
 *   switch_aarch64.S  AArch64 AAPCS64: saves x19-x30 and d8-d15;
 *   switch_ucontext.c anything else, with getcontext/makecontext/
 *                     swapcontext (portable but slower: glibc's
 *                     swapcontext also saves the signal mask, a system call
 *                     per switch).
 * The assembly versions save only what the calling convention says a
 * callee must preserve: chan__ctx_switch() is an ordinary function call to
 * the compiler, so every other register is already dead at the call.
 *
 * A context is only ever resumed by the thread that switched to it; the
 * scheduler guarantees that a task's context is saved completely (the
 * switch returned on the worker's side) before any other worker may resume
 * it.
 */
#ifndef CHAN_SCHED_SWITCH_H
#define CHAN_SCHED_SWITCH_H

#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <stddef.h>

#include "internal.h"

#ifdef CHAN_SWITCH_UCONTEXT
#include <ucontext.h>
#endif

typedef struct chan__ctx {
    void *sp;          /* assembly: the saved stack pointer */
#ifdef CHAN_SWITCH_UCONTEXT
    ucontext_t uc;     /* fallback: the whole saved context */
    void (*fn)(void *);  /* fallback: the entry, read once at the start */
    void *arg;
#endif
} chan__ctx_t;

/*
 * chan__ctx_make - prepare ctx so that the first switch to it calls
 * fn(arg) on the stack [lo, lo + size).  fn must never return: a finished
 * task switches away for good.
 */
CHAN_INTERNAL void chan__ctx_make(chan__ctx_t *ctx, void *lo, size_t size,
                                  void (*fn)(void *), void *arg);

/*
 * chan__ctx_prefetch - start loading what resuming ctx reads first (the
 * saved registers and the frames above them), for a context that will be
 * resumed soon: it has usually been out of the cache since it stopped.
 */
static inline void chan__ctx_prefetch(const chan__ctx_t *ctx)
{
#ifdef CHAN_SWITCH_UCONTEXT
    (void)ctx;
#else
    const char *sp = (const char *)ctx->sp;
    for (int i = 0; i < 4; i++)
        __builtin_prefetch(sp + i * 64);
#endif
}

/*
 * chan__ctx_switch - save the running context in from and resume to.
 * Returns when some thread switches back to from.
 */
CHAN_INTERNAL void chan__ctx_switch(chan__ctx_t *from, chan__ctx_t *to);

#endif /* CHAN_SCHED_SWITCH_H */
