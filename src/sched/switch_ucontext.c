/*
 * switch_ucontext.c - the portable task context switch, on POSIX
 * getcontext/makecontext/swapcontext (see switch.h).
 *
 * configure uses it where there is no assembly switch (or when asked to
 * with --enable-ucontext).  It is correct everywhere those calls exist but
 * slower: glibc's swapcontext saves and restores the signal mask with a
 * system call on every switch.
 *
 * makecontext passes only int arguments, so the entry function and its
 * argument are kept in the context itself and the context's address is
 * split into two ints.
 */
#include "internal.h"

#include <stdint.h>
#include <string.h>

#include "sched/switch.h"

#ifndef CHAN_SWITCH_UCONTEXT
#error "switch_ucontext.c needs CHAN_SWITCH_UCONTEXT (configure sets it)"
#endif

static void trampoline(unsigned hi, unsigned lo)
{
    uintptr_t p = ((uintptr_t)hi << 16 << 16) | (uintptr_t)lo;
    chan__ctx_t *ctx = (chan__ctx_t *)p;
    ctx->fn(ctx->arg);
    abort(); /* a task's entry never returns */
}

void chan__ctx_make(chan__ctx_t *ctx, void *lo, size_t size,
                    void (*fn)(void *), void *arg)
{
    ctx->sp = lo; /* only as "has a stack" (task.c) */
    ctx->fn = fn;
    ctx->arg = arg;
    chan__check(getcontext(&ctx->uc));
    ctx->uc.uc_stack.ss_sp = lo;
    ctx->uc.uc_stack.ss_size = size;
    ctx->uc.uc_link = NULL;
    uintptr_t p = (uintptr_t)ctx;
    makecontext(&ctx->uc, (void (*)(void))trampoline, 2,
                (unsigned)(p >> 16 >> 16), (unsigned)(p & 0xffffffffu));
}

void chan__ctx_switch(chan__ctx_t *from, chan__ctx_t *to)
{
    chan__check(swapcontext(&from->uc, &to->uc));
}
