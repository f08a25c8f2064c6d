/*
 * switch_x86_64.S - task context switch for x86-64 System V (see switch.h).
 *
 * A saved context is the stack pointer of a stack that holds, from the
 * lowest address up:
 *
 *    0   MXCSR (4 bytes), x87 control word (2 bytes), padding
 *    8   r15
 *   16   r14
 *   24   r13
 *   32   r12
 *   40   rbx
 *   48   rbp
 *   56   return address
 *
 * These are exactly the registers the ABI makes callee-saved; the status
 * bits of MXCSR and the x87 status word are caller-saved and left alone.
 * No system call and no signal mask: a switch is a few dozen cycles.
 */
#if defined(__x86_64__) && !defined(__ILP32__)

#if defined(__CET__) && (__CET__ & 1)
#define CHAN_ENDBR endbr64
#else
#define CHAN_ENDBR
#endif

    .text

/* void chan__ctx_switch(chan__ctx_t *from (rdi), chan__ctx_t *to (rsi)) */
    .globl  chan__ctx_switch
    .hidden chan__ctx_switch
    .type   chan__ctx_switch, @function
    .p2align 4
chan__ctx_switch:
    .cfi_startproc
    CHAN_ENDBR
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)        /* from->sp */
    movq    (%rsi), %rsp        /* to->sp */
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   chan__ctx_switch, .-chan__ctx_switch

/*
 * The first switch to a new context "returns" here, with the entry
 * function in r12 and its argument in r13 (placed by chan__ctx_make).
 * rsp is 16-byte aligned, as a call requires.  The entry never returns;
 * if it did, ud2 stops the program rather than running off the stack.
 */
    .globl  chan__ctx_start
    .hidden chan__ctx_start
    .type   chan__ctx_start, @function
    .p2align 4
chan__ctx_start:
    .cfi_startproc
    .cfi_undefined rip          /* the outermost frame of a task */
    CHAN_ENDBR
    xorl    %ebp, %ebp
    movq    %r13, %rdi
    callq   *%r12
    ud2
    .cfi_endproc
    .size   chan__ctx_start, .-chan__ctx_start

#endif

    .section .note.GNU-stack,"",@progbits
