/*
 * switch_asm.c - chan__ctx_make for the assembly context switches: lay out
 * a new stack so that the first chan__ctx_switch() to it "returns" into
 * chan__ctx_start, which calls the entry function (see the frame layouts
 * in switch_x86_64.S and switch_aarch64.S).
 */
#include "internal.h"

#include <stdint.h>
#include <string.h>

#include "sched/switch.h"

/* The first instructions of every task (in the .S file). */
CHAN_INTERNAL void chan__ctx_start(void);

void chan__ctx_make(chan__ctx_t *ctx, void *lo, size_t size,
                    void (*fn)(void *), void *arg)
{
    uintptr_t top = ((uintptr_t)lo + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* After the switch's ret pops the return address, rsp must be 16-byte
     * aligned so that chan__ctx_start's call gives fn the alignment the
     * ABI promises.  Eight slots below that: the MXCSR/x87 word, r15, r14,
     * r13, r12, rbx, rbp, return address. */
    uint64_t *sp = (uint64_t *)(top - 16) - 8;
    memset(sp, 0, 8 * sizeof *sp);
    /* The power-on defaults: all exceptions masked, round to nearest
     * (MXCSR 0x1f80); x87 extended precision, exceptions masked
     * (0x037f). */
    uint32_t mxcsr = 0x1f80;
    uint16_t fpucw = 0x037f;
    memcpy(sp, &mxcsr, sizeof mxcsr);
    memcpy((char *)sp + 4, &fpucw, sizeof fpucw);
    sp[4] = (uint64_t)(uintptr_t)fn;   /* r12 */
    sp[3] = (uint64_t)(uintptr_t)arg;  /* r13 */
    sp[7] = (uint64_t)(uintptr_t)chan__ctx_start;
    ctx->sp = sp;
#elif defined(__aarch64__)
    /* The 160-byte frame sits right below the top; when it is popped, sp
     * is the (16-byte aligned) top. */
    uint64_t *sp = (uint64_t *)(top - 160);
    memset(sp, 0, 160);
    sp[0] = (uint64_t)(uintptr_t)fn;    /* x19 */
    sp[1] = (uint64_t)(uintptr_t)arg;   /* x20 */
    sp[11] = (uint64_t)(uintptr_t)chan__ctx_start; /* x30 */
    ctx->sp = sp;
#else
#error "switch_asm.c is only built for x86-64 and AArch64"
#endif
}
