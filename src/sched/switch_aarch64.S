/*
 * switch_aarch64.S - task context switch for AArch64 (AAPCS64; see
 * switch.h).
 *
 * A saved context is the stack pointer of a 160-byte frame holding, from
 * the lowest address up:
 *
 *     0  x19 x20     16  x21 x22     32  x23 x24     48  x25 x26
 *    64  x27 x28     80  x29 (frame pointer) x30 (return address)
 *    96  d8  d9     112  d10 d11    128  d12 d13    144  d14 d15
 *
 * These are exactly the registers AAPCS64 makes callee-saved (only the low
 * 64 bits of v8-v15 are).  No system call and no signal mask.
 */
#if defined(__aarch64__)

    .text

/* void chan__ctx_switch(chan__ctx_t *from (x0), chan__ctx_t *to (x1)) */
    .globl  chan__ctx_switch
    .hidden chan__ctx_switch
    .type   chan__ctx_switch, %function
    .p2align 4
chan__ctx_switch:
    .cfi_startproc
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8,  d9,  [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x9, sp
    str     x9, [x0]            /* from->sp */
    ldr     x9, [x1]            /* to->sp */
    mov     sp, x9
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8,  d9,  [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
    .cfi_endproc
    .size   chan__ctx_switch, .-chan__ctx_switch

/*
 * The first switch to a new context returns here, with the entry function
 * in x19 and its argument in x20 (placed by chan__ctx_make).  The entry
 * never returns; if it did, brk stops the program.
 */
    .globl  chan__ctx_start
    .hidden chan__ctx_start
    .type   chan__ctx_start, %function
    .p2align 4
chan__ctx_start:
    .cfi_startproc
    .cfi_undefined x30          /* the outermost frame of a task */
    mov     x29, #0
    mov     x0, x20
    blr     x19
    brk     #0
    .cfi_endproc
    .size   chan__ctx_start, .-chan__ctx_start

#endif

    .section .note.GNU-stack,"",%progbits
