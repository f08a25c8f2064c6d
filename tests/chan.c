/*
 * chan.c - tests of the channel object: creation, references, len and cap,
 * send and receive in their blocking, non-blocking and timed forms, close,
 * FIFO service of blocked senders and receivers, and bad input.
 *
 * Interleavings are forced, not hoped for: a helper thread posts a
 * semaphore right before its blocking call, and the test waits until that
 * thread is asleep in the kernel (test_wait_blocked) before acting.  Sleeps
 * appear only in the timeout tests, with tolerances.
 */
#include <limits.h>

#include "util.h"

TestSuite(chan, .timeout = TEST_TIMEOUT_S);

/*
 * Some tests ask for allocations far beyond any machine's memory to check
 * that chan_make returns NULL; the sanitizers' allocators must then return
 * NULL too instead of stopping the program.
 */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif
#if defined(__SANITIZE_THREAD__)
const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#endif

/* A value no test sends: a receive that must not write leaves it there. */
#define SENTINEL (-12345)

/* Slack above a requested timeout that still counts as "on time".  Wide,
 * because sanitizer runs on a shared two-core machine can be descheduled
 * for a long while; it only has to catch a wait that ignores its limit. */
#define SLACK_NS (2000 * TEST_MS)

/* ------------------------------------------------------------------ */
/* A helper thread doing one blocking operation on an int channel.    */

enum op_kind { OP_SEND, OP_RECV, OP_TIMEDSEND, OP_TIMEDRECV };

struct op {
    chan_t *ch;
    enum op_kind kind;
    int64_t timeout;   /* for the timed kinds */
    int value;         /* send: the value; recv: where it lands */
    int rc;            /* the call's result, valid once done */
    int64_t elapsed;   /* ns spent in the call */
    struct test_call call;
};

static void op_call(void *arg)
{
    struct op *o = arg;
    int64_t t0 = test_now_ns();
    int rc;
    switch (o->kind) {
    case OP_SEND: rc = chan_send(o->ch, &o->value); break;
    case OP_RECV: rc = chan_recv(o->ch, &o->value); break;
    case OP_TIMEDSEND: rc = chan_timedsend(o->ch, &o->value, o->timeout); break;
    default: rc = chan_timedrecv(o->ch, &o->value, o->timeout); break;
    }
    o->elapsed = test_now_ns() - t0;
    o->rc = rc;
}

static void op_prepare(struct op *o, chan_t *ch, enum op_kind kind, int value,
                       int64_t timeout)
{
    o->ch = ch;
    o->kind = kind;
    o->timeout = timeout;
    o->value = value;
    o->rc = 1;
}

/* Starts the operation and returns once it is blocked in the library. */
static void op_start_blocked(struct op *o, chan_t *ch, enum op_kind kind,
                             int value, int64_t timeout)
{
    op_prepare(o, ch, kind, value, timeout);
    test_start_blocked(&o->call, op_call, o);
}

/* Joins the thread; returns the call's result. */
static int op_join(struct op *o)
{
    test_join(&o->call);
    return o->rc;
}

/* ------------------------------------------------------------------ */
/* chan_make, references, len and cap                                 */

Test(chan, make_unbuffered)
{
    chan_t *c = chan_make(sizeof(int), 0);
    cr_assert_not_null(c);
    cr_assert_eq(chan_cap(c), 0);
    cr_assert_eq(chan_len(c), 0);
    chan_release(c);
}

Test(chan, make_buffered)
{
    chan_t *c = chan_make(sizeof(int), 5);
    cr_assert_not_null(c);
    cr_assert_eq(chan_cap(c), 5);
    cr_assert_eq(chan_len(c), 0);
    chan_release(c);
}

Test(chan, elem_size_zero_buffered_counts_signals)
{
    chan_t *c = chan_make(0, 3);
    cr_assert_not_null(c);
    cr_assert_eq(chan_cap(c), 3);
    int dummy = 7;
    cr_assert_eq(chan_send(c, NULL), 0);
    cr_assert_eq(chan_trysend(c, NULL), 0);
    cr_assert_eq(chan_timedsend(c, &dummy, 0), 0); /* non-NULL is fine too */
    cr_assert_eq(chan_len(c), 3);
    cr_assert_eq(chan_trysend(c, NULL), -EAGAIN);
    cr_assert_eq(chan_timedsend(c, NULL, TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_recv(c, NULL), 0);
    cr_assert_eq(chan_tryrecv(c, &dummy), 0);
    cr_assert_eq(dummy, 7, "a zero-size receive wrote to elem");
    cr_assert_eq(chan_timedrecv(c, NULL, TEST_MS), 0);
    cr_assert_eq(chan_len(c), 0);
    cr_assert_eq(chan_tryrecv(c, NULL), -EAGAIN);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_recv(c, NULL), -EPIPE);
    cr_assert_eq(chan_send(c, NULL), -EPIPE);
    chan_release(c);
}

static void *send_null(void *arg)
{
    return (void *)(intptr_t)chan_send(arg, NULL);
}

Test(chan, elem_size_zero_unbuffered_rendezvous)
{
    chan_t *c = chan_make(0, 0);
    cr_assert_not_null(c);
    cr_assert_eq(chan_trysend(c, NULL), -EAGAIN);
    pthread_t t = test_thread_start(send_null, c);
    cr_assert_eq(chan_recv(c, NULL), 0);
    cr_assert_eq((intptr_t)test_thread_join(t), 0);
    chan_release(c);
}

/* Several KiB per element, buffered and unbuffered. */
enum { BIG = 6 * 1024 + 3 };
struct big {
    unsigned char b[BIG];
};

static void big_fill(struct big *v, unsigned seed)
{
    for (size_t i = 0; i < BIG; i++)
        v->b[i] = (unsigned char)(seed * 31 + i * 7 + (i >> 8));
}

static void *big_sender(void *arg)
{
    chan_t *c = arg;
    struct big *v = malloc(sizeof *v);
    intptr_t bad = 0;
    for (unsigned k = 0; k < 20; k++) {
        big_fill(v, k);
        if (chan_send(c, v) != 0)
            bad++;
    }
    free(v);
    return (void *)bad;
}

Test(chan, large_elements_copied_intact)
{
    static const size_t caps[] = { 0, 1, 4 };
    struct big *want = malloc(sizeof *want), *got = malloc(sizeof *got);
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        chan_t *c = chan_make(sizeof(struct big), caps[i]);
        cr_assert_not_null(c);
        cr_assert_eq(chan_cap(c), caps[i]);
        pthread_t t = test_thread_start(big_sender, c);
        for (unsigned k = 0; k < 20; k++) {
            memset(got, 0, sizeof *got);
            cr_assert_eq(chan_recv(c, got), 0);
            big_fill(want, k);
            cr_assert(memcmp(want, got, sizeof *got) == 0,
                      "element %u corrupted (capacity %zu)", k, caps[i]);
        }
        cr_assert_eq((intptr_t)test_thread_join(t), 0);
        chan_release(c);
    }
    free(want);
    free(got);
}

Test(chan, make_overflow_returns_null)
{
    cr_assert_null(chan_make(2, SIZE_MAX / 2 + 1));
    cr_assert_null(chan_make(SIZE_MAX, 2));
    cr_assert_null(chan_make((size_t)1 << (sizeof(size_t) * 4),
                             (size_t)1 << (sizeof(size_t) * 4)));
    cr_assert_null(chan_make(SIZE_MAX / 3 + 1, 3));
    /* Products that fit in size_t but leave no room for the channel
     * itself, nor for rounding the allocation up to whole cache lines.
     * The sizes that wrap around when rounded up form a run of 63
     * capacities just below SIZE_MAX - (header size); steps of 7 cannot
     * miss it, and keep the sanitizers' "failed to allocate" warnings for
     * the ones that reach the allocator few. */
    for (size_t k = 0; k < 512; k += 7)
        cr_assert_null(chan_make(1, SIZE_MAX - k), "capacity SIZE_MAX-%zu", k);
    cr_assert_null(chan_make(64, SIZE_MAX / 64));
    /* No overflow at all, but far more memory than exists. */
    cr_assert_null(chan_make(1, SIZE_MAX / 4));
    /* A huge element with no buffer needs no memory for elements. */
    chan_t *c = chan_make(SIZE_MAX, 0);
    if (c) {
        cr_assert_eq(chan_cap(c), 0);
        chan_release(c);
    }
    /* A signal channel with a huge capacity needs no buffer either. */
    c = chan_make(0, SIZE_MAX);
    cr_assert_not_null(c);
    cr_assert_eq(chan_cap(c), SIZE_MAX);
    cr_assert_eq(chan_send(c, NULL), 0);
    cr_assert_eq(chan_len(c), 1);
    chan_release(c);
}

static void *release_after_use(void *arg)
{
    chan_t *c = arg;
    int v = 42;
    intptr_t rc = chan_send(c, &v);
    chan_release(c);
    return (void *)rc;
}

Test(chan, retain_and_release)
{
    cr_assert_null(chan_retain(NULL));
    chan_release(NULL);

    chan_t *c = chan_make(sizeof(int), 1);
    cr_assert_not_null(c);
    cr_assert_eq(chan_retain(c), c);
    cr_assert_eq(chan_retain(c), c);
    chan_release(c);
    chan_release(c);
    /* One reference left: still fully usable. */
    int v = 5, out = 0;
    cr_assert_eq(chan_send(c, &v), 0);
    cr_assert_eq(chan_recv(c, &out), 0);
    cr_assert_eq(out, 5);

    /* Hand a reference to a thread that drops it when done. */
    pthread_t t = test_thread_start(release_after_use, chan_retain(c));
    cr_assert_eq((intptr_t)test_thread_join(t), 0);
    cr_assert_eq(chan_recv(c, &out), 0);
    cr_assert_eq(out, 42);
    chan_release(c);
}

Test(chan, len_and_cap)
{
    cr_assert_eq(chan_len(NULL), 0);
    cr_assert_eq(chan_cap(NULL), 0);
    chan_t *c = chan_make(sizeof(int), 3);
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(chan_len(c), (size_t)i);
        cr_assert_eq(chan_send(c, &i), 0);
    }
    cr_assert_eq(chan_len(c), 3);
    cr_assert_eq(chan_cap(c), 3);
    int v;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(chan_len(c), 2);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_len(c), 2, "close must not drop buffered values");
    cr_assert_eq(chan_cap(c), 3);
    chan_release(c);
}

/* While a sender waits on a full channel, len still counts the buffer, a
 * try must not slip past the waiter, and a receive moves the waiter's
 * value in behind the buffered ones.  Capacity 1 and 3, over several laps
 * of the buffer. */
Test(chan, len_and_order_while_a_sender_waits)
{
    static const size_t caps[] = { 1, 3 };
    for (size_t k = 0; k < 2; k++) {
        size_t cap = caps[k];
        chan_t *c = chan_make(sizeof(int), cap);
        int next_in = 0, next_out = 0, v;
        for (int lap = 0; lap < 5; lap++) {
            while (chan_len(c) < cap)
                cr_assert_eq(chan_send(c, &(int){ next_in++ }), 0);
            struct op s;
            op_start_blocked(&s, c, OP_SEND, next_in++, 0);
            cr_assert_eq(chan_len(c), cap, "capacity %zu", cap);
            cr_assert_eq(chan_trysend(c, &(int){ -1 }), -EAGAIN);
            cr_assert_eq(chan_recv(c, &v), 0);
            cr_assert_eq(v, next_out++, "capacity %zu", cap);
            cr_assert_eq(op_join(&s), 0);
            cr_assert_eq(chan_len(c), cap, "capacity %zu", cap);
            for (size_t i = 0; i < cap; i++) {
                cr_assert_eq(chan_tryrecv(c, &v), 0);
                cr_assert_eq(v, next_out++, "capacity %zu", cap);
                cr_assert_eq(chan_len(c), cap - 1 - i);
            }
            cr_assert_eq(chan_tryrecv(c, &v), -EAGAIN);
        }
        chan_release(c);
    }
}

/* ------------------------------------------------------------------ */
/* Buffered channels                                                  */

Test(chan, buffered_fifo_with_wraparound)
{
    chan_t *c = chan_make(sizeof(int), 4);
    int next_in = 0, next_out = 0, v;
    /* Uneven batches so that head and tail wrap at different places. */
    static const int batch[] = { 3, 4, 1, 2, 4, 3, 2, 1, 4 };
    for (size_t b = 0; b < sizeof batch / sizeof batch[0]; b++) {
        for (int i = 0; i < batch[b]; i++)
            cr_assert_eq(chan_send(c, &(int){ next_in++ }), 0);
        cr_assert_eq(chan_len(c), (size_t)batch[b]);
        for (int i = 0; i < batch[b]; i++) {
            cr_assert_eq(chan_recv(c, &v), 0);
            cr_assert_eq(v, next_out++, "out of order");
        }
    }
    chan_release(c);
}

Test(chan, buffered_try_forms)
{
    chan_t *c = chan_make(sizeof(int), 2);
    int v = SENTINEL;
    cr_assert_eq(chan_tryrecv(c, &v), -EAGAIN);
    cr_assert_eq(v, SENTINEL);
    cr_assert_eq(chan_trysend(c, &(int){ 1 }), 0);
    cr_assert_eq(chan_trysend(c, &(int){ 2 }), 0);
    cr_assert_eq(chan_trysend(c, &(int){ 3 }), -EAGAIN);
    cr_assert_eq(chan_len(c), 2);
    cr_assert_eq(chan_tryrecv(c, &v), 0);
    cr_assert_eq(v, 1);
    cr_assert_eq(chan_trysend(c, &(int){ 4 }), 0);
    cr_assert_eq(chan_tryrecv(c, &v), 0);
    cr_assert_eq(v, 2);
    cr_assert_eq(chan_tryrecv(c, &v), 0);
    cr_assert_eq(v, 4);
    v = SENTINEL;
    cr_assert_eq(chan_tryrecv(c, &v), -EAGAIN);
    cr_assert_eq(v, SENTINEL);
    chan_release(c);
}

Test(chan, recv_null_elem_discards)
{
    chan_t *c = chan_make(sizeof(int), 4);
    for (int i = 1; i <= 4; i++)
        cr_assert_eq(chan_send(c, &i), 0);
    int v;
    cr_assert_eq(chan_recv(c, NULL), 0);
    cr_assert_eq(chan_tryrecv(c, NULL), 0);
    cr_assert_eq(chan_timedrecv(c, NULL, TEST_MS), 0);
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 4);
    chan_release(c);

    /* Unbuffered: the discarding receiver still releases the sender. */
    c = chan_make(sizeof(int), 0);
    struct op s;
    op_start_blocked(&s, c, OP_SEND, 9, 0);
    cr_assert_eq(chan_recv(c, NULL), 0);
    cr_assert_eq(op_join(&s), 0);
    chan_release(c);
}

Test(chan, close_drains_buffer_then_epipe)
{
    chan_t *c = chan_make(sizeof(int), 4);
    for (int i = 10; i < 13; i++)
        cr_assert_eq(chan_send(c, &i), 0);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_send(c, &(int){ 99 }), -EPIPE);
    cr_assert_eq(chan_trysend(c, &(int){ 99 }), -EPIPE);
    cr_assert_eq(chan_timedsend(c, &(int){ 99 }, 0), -EPIPE);
    cr_assert_eq(chan_timedsend(c, &(int){ 99 }, 10 * TEST_MS), -EPIPE);
    cr_assert_eq(chan_timedsend(c, &(int){ 99 }, CHAN_FOREVER), -EPIPE);
    cr_assert_eq(chan_len(c), 3);
    int v;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 10);
    cr_assert_eq(chan_tryrecv(c, &v), 0);
    cr_assert_eq(v, 11);
    cr_assert_eq(chan_timedrecv(c, &v, 10 * TEST_MS), 0);
    cr_assert_eq(v, 12);
    /* Drained: every receive form says -EPIPE and leaves elem alone. */
    v = SENTINEL;
    cr_assert_eq(chan_recv(c, &v), -EPIPE);
    cr_assert_eq(chan_tryrecv(c, &v), -EPIPE);
    cr_assert_eq(chan_timedrecv(c, &v, 0), -EPIPE);
    cr_assert_eq(chan_timedrecv(c, &v, 10 * TEST_MS), -EPIPE);
    cr_assert_eq(chan_timedrecv(c, &v, CHAN_FOREVER), -EPIPE);
    cr_assert_eq(chan_recv(c, NULL), -EPIPE);
    cr_assert_eq(v, SENTINEL, "a failed receive wrote to elem");
    cr_assert_eq(chan_len(c), 0);
    chan_release(c);
}

Test(chan, close_unbuffered_then_epipe)
{
    chan_t *c = chan_make(sizeof(int), 0);
    cr_assert_eq(chan_close(c), 0);
    int v = SENTINEL;
    cr_assert_eq(chan_recv(c, &v), -EPIPE);
    cr_assert_eq(chan_tryrecv(c, &v), -EPIPE);
    cr_assert_eq(chan_timedrecv(c, &v, 5 * TEST_MS), -EPIPE);
    cr_assert_eq(v, SENTINEL);
    cr_assert_eq(chan_send(c, &v), -EPIPE);
    cr_assert_eq(chan_trysend(c, &v), -EPIPE);
    cr_assert_eq(chan_timedsend(c, &v, 5 * TEST_MS), -EPIPE);
    chan_release(c);
}

Test(chan, close_twice_is_epipe)
{
    chan_t *c = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_close(c), -EPIPE);
    cr_assert_eq(chan_close(c), -EPIPE);
    chan_release(c);
    c = chan_make(0, 0);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_close(c), -EPIPE);
    chan_release(c);
}

/* ------------------------------------------------------------------ */
/* Close wakes blocked senders and receivers                          */

Test(chan, close_wakes_blocked_receivers)
{
    static const size_t caps[] = { 0, 3 };
    for (size_t i = 0; i < 2; i++) {
        chan_t *c = chan_make(sizeof(int), caps[i]);
        struct op r[4];
        op_start_blocked(&r[0], c, OP_RECV, SENTINEL, 0);
        op_start_blocked(&r[1], c, OP_RECV, SENTINEL, 0);
        op_start_blocked(&r[2], c, OP_TIMEDRECV, SENTINEL, 60000 * TEST_MS);
        op_start_blocked(&r[3], c, OP_TIMEDRECV, SENTINEL, CHAN_FOREVER);
        for (int k = 0; k < 4; k++)
            cr_assert(test_stays_zero(&r[k].call.done, 0), "receiver %d returned", k);
        cr_assert_eq(chan_close(c), 0);
        for (int k = 0; k < 4; k++) {
            cr_assert_eq(op_join(&r[k]), -EPIPE, "receiver %d (capacity %zu)",
                         k, caps[i]);
            cr_assert_eq(r[k].value, SENTINEL, "receiver %d got a value", k);
        }
        chan_release(c);
    }
}

Test(chan, close_wakes_blocked_senders_unbuffered)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct op s[3];
    op_start_blocked(&s[0], c, OP_SEND, 1, 0);
    op_start_blocked(&s[1], c, OP_TIMEDSEND, 2, 60000 * TEST_MS);
    op_start_blocked(&s[2], c, OP_TIMEDSEND, 3, CHAN_FOREVER);
    cr_assert_eq(chan_close(c), 0);
    for (int k = 0; k < 3; k++)
        cr_assert_eq(op_join(&s[k]), -EPIPE, "sender %d", k);
    /* Nothing was delivered. */
    int v = SENTINEL;
    cr_assert_eq(chan_tryrecv(c, &v), -EPIPE);
    cr_assert_eq(v, SENTINEL);
    chan_release(c);
}

Test(chan, close_wakes_blocked_senders_buffered)
{
    chan_t *c = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(c, &(int){ 7 }), 0);
    struct op s[2];
    op_start_blocked(&s[0], c, OP_SEND, 8, 0);
    op_start_blocked(&s[1], c, OP_TIMEDSEND, 9, 60000 * TEST_MS);
    cr_assert_eq(chan_len(c), 1, "blocked senders are not buffered values");
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(op_join(&s[0]), -EPIPE);
    cr_assert_eq(op_join(&s[1]), -EPIPE);
    /* The buffered value survives the close; the blocked ones were not
     * delivered. */
    int v;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 7);
    v = SENTINEL;
    cr_assert_eq(chan_recv(c, &v), -EPIPE);
    cr_assert_eq(v, SENTINEL);
    chan_release(c);
}

/* ------------------------------------------------------------------ */
/* Unbuffered rendezvous                                              */

Test(chan, unbuffered_send_waits_for_receiver)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct op s;
    op_start_blocked(&s, c, OP_SEND, 77, 0);
    cr_assert(test_stays_zero(&s.call.done, 50 * TEST_MS),
              "an unbuffered send returned with no receiver");
    cr_assert_eq(chan_len(c), 0);
    int v = 0;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 77);
    cr_assert_eq(op_join(&s), 0);
    chan_release(c);
}

Test(chan, unbuffered_recv_waits_for_sender)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct op r;
    op_start_blocked(&r, c, OP_RECV, SENTINEL, 0);
    cr_assert(test_stays_zero(&r.call.done, 50 * TEST_MS));
    cr_assert_eq(chan_send(c, &(int){ 31 }), 0);
    /* The value was taken: nothing is left for anybody else. */
    cr_assert_eq(chan_tryrecv(c, NULL), -EAGAIN);
    cr_assert_eq(op_join(&r), 0);
    cr_assert_eq(r.value, 31);
    chan_release(c);
}

Test(chan, unbuffered_try_needs_a_waiting_peer)
{
    chan_t *c = chan_make(sizeof(int), 0);
    int v = SENTINEL;
    cr_assert_eq(chan_trysend(c, &(int){ 1 }), -EAGAIN);
    cr_assert_eq(chan_tryrecv(c, &v), -EAGAIN);
    cr_assert_eq(chan_timedsend(c, &(int){ 1 }, 0), -EAGAIN);
    cr_assert_eq(chan_timedrecv(c, &v, 0), -EAGAIN);
    cr_assert_eq(v, SENTINEL);

    /* With a receiver waiting, trysend hands the value over. */
    struct op r;
    op_start_blocked(&r, c, OP_RECV, SENTINEL, 0);
    cr_assert_eq(chan_trysend(c, &(int){ 55 }), 0);
    cr_assert_eq(op_join(&r), 0);
    cr_assert_eq(r.value, 55);
    cr_assert_eq(chan_trysend(c, &(int){ 1 }), -EAGAIN);

    /* With a sender waiting, tryrecv takes its value. */
    struct op s;
    op_start_blocked(&s, c, OP_SEND, 66, 0);
    cr_assert_eq(chan_tryrecv(c, &v), 0);
    cr_assert_eq(v, 66);
    cr_assert_eq(op_join(&s), 0);

    /* timeout 0 behaves the same. */
    op_start_blocked(&r, c, OP_TIMEDRECV, SENTINEL, CHAN_FOREVER);
    cr_assert_eq(chan_timedsend(c, &(int){ 56 }, 0), 0);
    cr_assert_eq(op_join(&r), 0);
    cr_assert_eq(r.value, 56);
    op_start_blocked(&s, c, OP_TIMEDSEND, 67, CHAN_FOREVER);
    cr_assert_eq(chan_timedrecv(c, &v, 0), 0);
    cr_assert_eq(v, 67);
    cr_assert_eq(op_join(&s), 0);
    chan_release(c);
}

Test(chan, timed_ops_complete_when_peer_arrives)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct op r;
    op_start_blocked(&r, c, OP_TIMEDRECV, SENTINEL, 60000 * TEST_MS);
    int64_t t0 = test_now_ns();
    cr_assert_eq(chan_timedsend(c, &(int){ 12 }, 60000 * TEST_MS), 0);
    cr_assert_eq(op_join(&r), 0);
    cr_assert_eq(r.value, 12);
    cr_assert_lt(test_now_ns() - t0, 30000 * TEST_MS);
    chan_release(c);
}

/* A value one sender sends in order arrives in order, through a thread. */
struct seq_arg {
    chan_t *ch;
    int n;
};

static void *seq_sender(void *arg)
{
    struct seq_arg *a = arg;
    intptr_t bad = 0;
    for (int i = 0; i < a->n; i++)
        if (chan_send(a->ch, &i) != 0)
            bad++;
    if (chan_close(a->ch) != 0)
        bad++;
    return (void *)bad;
}

Test(chan, one_sender_order_preserved)
{
    static const size_t caps[] = { 0, 1, 7 };
    int n = (int)test_scaled(5000, 10);
    for (size_t i = 0; i < 3; i++) {
        struct seq_arg a = { chan_make(sizeof(int), caps[i]), n };
        pthread_t t = test_thread_start(seq_sender, &a);
        int v, want = 0, rc;
        while ((rc = chan_recv(a.ch, &v)) == 0) {
            cr_assert_eq(v, want, "capacity %zu: got %d, want %d", caps[i], v,
                         want);
            want++;
        }
        cr_assert_eq(rc, -EPIPE);
        cr_assert_eq(want, n);
        cr_assert_eq((intptr_t)test_thread_join(t), 0);
        chan_release(a.ch);
    }
}

/* ------------------------------------------------------------------ */
/* Timeouts                                                           */

static void check_on_time(int64_t elapsed, int64_t asked)
{
    cr_assert_geq(elapsed, asked, "returned after %lld ns, asked for %lld",
                  (long long)elapsed, (long long)asked);
    cr_assert_lt(elapsed, asked + SLACK_NS, "returned after %lld ns, asked %lld",
                 (long long)elapsed, (long long)asked);
}

Test(chan, timedrecv_times_out)
{
    static const size_t caps[] = { 0, 2 };
    for (size_t i = 0; i < 2; i++) {
        chan_t *c = chan_make(sizeof(int), caps[i]);
        int v = SENTINEL;
        int64_t t0 = test_now_ns();
        cr_assert_eq(chan_timedrecv(c, &v, 50 * TEST_MS), -ETIMEDOUT);
        check_on_time(test_now_ns() - t0, 50 * TEST_MS);
        cr_assert_eq(v, SENTINEL);
        t0 = test_now_ns();
        cr_assert_eq(chan_timedrecv(c, &v, 1), -ETIMEDOUT);
        check_on_time(test_now_ns() - t0, 1);
        /* The timed-out receiver left the queue: nobody is waiting. */
        cr_assert_eq(chan_trysend(c, &(int){ 3 }), caps[i] ? 0 : -EAGAIN);
        chan_release(c);
    }
}

Test(chan, timedsend_times_out)
{
    static const size_t caps[] = { 0, 2 };
    for (size_t i = 0; i < 2; i++) {
        chan_t *c = chan_make(sizeof(int), caps[i]);
        for (size_t k = 0; k < caps[i]; k++)
            cr_assert_eq(chan_send(c, &(int){ (int)k }), 0);
        int64_t t0 = test_now_ns();
        cr_assert_eq(chan_timedsend(c, &(int){ 99 }, 50 * TEST_MS), -ETIMEDOUT);
        check_on_time(test_now_ns() - t0, 50 * TEST_MS);
        cr_assert_eq(chan_len(c), caps[i]);
        /* The timed-out value was not delivered. */
        int v;
        for (size_t k = 0; k < caps[i]; k++) {
            cr_assert_eq(chan_recv(c, &v), 0);
            cr_assert_eq(v, (int)k);
        }
        cr_assert_eq(chan_tryrecv(c, &v), -EAGAIN);
        chan_release(c);
    }
}

Test(chan, negative_timeout_waits_forever)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct op r[2];
    op_start_blocked(&r[0], c, OP_TIMEDRECV, SENTINEL, CHAN_FOREVER);
    op_start_blocked(&r[1], c, OP_TIMEDRECV, SENTINEL, -7);
    cr_assert(test_stays_zero(&r[0].call.done, 100 * TEST_MS));
    cr_assert(test_stays_zero(&r[1].call.done, 0));
    cr_assert_eq(chan_send(c, &(int){ 1 }), 0);
    cr_assert_eq(chan_send(c, &(int){ 2 }), 0);
    cr_assert_eq(op_join(&r[0]), 0);
    cr_assert_eq(op_join(&r[1]), 0);
    cr_assert_eq(r[0].value + r[1].value, 3);

    struct op s;
    op_start_blocked(&s, c, OP_TIMEDSEND, 8, INT64_MIN);
    cr_assert(test_stays_zero(&s.call.done, 100 * TEST_MS));
    int v;
    cr_assert_eq(chan_recv(c, &v), 0);
    cr_assert_eq(v, 8);
    cr_assert_eq(op_join(&s), 0);
    chan_release(c);
}

Test(chan, huge_timeout_does_not_overflow)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct op r;
    op_start_blocked(&r, c, OP_TIMEDRECV, SENTINEL, INT64_MAX);
    cr_assert(test_stays_zero(&r.call.done, 20 * TEST_MS),
              "a timeout of INT64_MAX expired at once");
    cr_assert_eq(chan_send(c, &(int){ 4 }), 0);
    cr_assert_eq(op_join(&r), 0);
    cr_assert_eq(r.value, 4);
    chan_release(c);
}

/* ------------------------------------------------------------------ */
/* First come, first served                                           */

Test(chan, blocked_senders_served_in_order)
{
    enum { N = 5 };
    static const size_t caps[] = { 0, 2 };
    for (size_t i = 0; i < 2; i++) {
        chan_t *c = chan_make(sizeof(int), caps[i]);
        for (size_t k = 0; k < caps[i]; k++)
            cr_assert_eq(chan_send(c, &(int){ 100 + (int)k }), 0);
        struct op s[N];
        for (int k = 0; k < N; k++)
            op_start_blocked(&s[k], c, k % 2 ? OP_TIMEDSEND : OP_SEND, k,
                             60000 * TEST_MS);
        cr_assert_eq(chan_len(c), caps[i]);
        int v;
        for (size_t k = 0; k < caps[i]; k++) {
            cr_assert_eq(chan_recv(c, &v), 0);
            cr_assert_eq(v, 100 + (int)k);
        }
        for (int k = 0; k < N; k++) {
            cr_assert_eq(chan_recv(c, &v), 0);
            cr_assert_eq(v, k, "capacity %zu: blocked senders out of order",
                         caps[i]);
        }
        for (int k = 0; k < N; k++)
            cr_assert_eq(op_join(&s[k]), 0);
        cr_assert_eq(chan_tryrecv(c, &v), -EAGAIN);
        chan_release(c);
    }
}

Test(chan, blocked_receivers_served_in_order)
{
    enum { N = 5 };
    static const size_t caps[] = { 0, 3 };
    for (size_t i = 0; i < 2; i++) {
        chan_t *c = chan_make(sizeof(int), caps[i]);
        struct op r[N];
        for (int k = 0; k < N; k++)
            op_start_blocked(&r[k], c, k % 2 ? OP_TIMEDRECV : OP_RECV, SENTINEL,
                             60000 * TEST_MS);
        for (int k = 0; k < N; k++)
            cr_assert_eq(chan_send(c, &k), 0);
        for (int k = 0; k < N; k++) {
            cr_assert_eq(op_join(&r[k]), 0);
            cr_assert_eq(r[k].value, k,
                         "capacity %zu: receiver %d got %d", caps[i], k,
                         r[k].value);
        }
        cr_assert_eq(chan_len(c), 0);
        chan_release(c);
    }
}

/*
 * How long the waiter in the middle of the queue waits before it gives up.
 * op_start_blocked must see it asleep in the call first (three looks, a
 * millisecond apart), which a loaded machine can delay by tens of
 * milliseconds: the timeout leaves ample room for that.
 */
#define MIDDLE_TIMEOUT_NS (500 * TEST_MS)

Test(chan, timed_out_waiter_leaves_the_queue)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct op r[3];
    op_start_blocked(&r[0], c, OP_RECV, SENTINEL, 0);
    op_start_blocked(&r[1], c, OP_TIMEDRECV, SENTINEL, MIDDLE_TIMEOUT_NS);
    op_start_blocked(&r[2], c, OP_RECV, SENTINEL, 0);
    /* Wait until the middle one has given up. */
    cr_assert(test_wait_nonzero(&r[1].call.done, 30000 * TEST_MS));
    cr_assert_eq(op_join(&r[1]), -ETIMEDOUT);
    cr_assert_eq(r[1].value, SENTINEL);
    check_on_time(r[1].elapsed, MIDDLE_TIMEOUT_NS);
    cr_assert_eq(chan_send(c, &(int){ 1 }), 0);
    cr_assert_eq(chan_send(c, &(int){ 2 }), 0);
    cr_assert_eq(op_join(&r[0]), 0);
    cr_assert_eq(op_join(&r[2]), 0);
    cr_assert_eq(r[0].value, 1);
    cr_assert_eq(r[2].value, 2);

    /* The same for senders, on a full buffered channel. */
    chan_t *b = chan_make(sizeof(int), 1);
    cr_assert_eq(chan_send(b, &(int){ 0 }), 0);
    struct op s[3];
    op_start_blocked(&s[0], b, OP_SEND, 1, 0);
    op_start_blocked(&s[1], b, OP_TIMEDSEND, 2, MIDDLE_TIMEOUT_NS);
    op_start_blocked(&s[2], b, OP_SEND, 3, 0);
    cr_assert(test_wait_nonzero(&s[1].call.done, 30000 * TEST_MS));
    cr_assert_eq(op_join(&s[1]), -ETIMEDOUT);
    int v;
    for (int want = 0; want <= 3; want += want == 1 ? 2 : 1) {
        cr_assert_eq(chan_recv(b, &v), 0);
        cr_assert_eq(v, want);
    }
    cr_assert_eq(op_join(&s[0]), 0);
    cr_assert_eq(op_join(&s[2]), 0);
    cr_assert_eq(chan_tryrecv(b, &v), -EAGAIN);
    chan_release(b);
    chan_release(c);
}

/* ------------------------------------------------------------------ */
/* Bad input                                                          */

Test(chan, null_channel_is_einval)
{
    int v = SENTINEL;
    cr_assert_eq(chan_send(NULL, &v), -EINVAL);
    cr_assert_eq(chan_recv(NULL, &v), -EINVAL);
    cr_assert_eq(chan_trysend(NULL, &v), -EINVAL);
    cr_assert_eq(chan_tryrecv(NULL, &v), -EINVAL);
    cr_assert_eq(chan_timedsend(NULL, &v, 0), -EINVAL);
    cr_assert_eq(chan_timedsend(NULL, &v, TEST_MS), -EINVAL);
    cr_assert_eq(chan_timedsend(NULL, &v, CHAN_FOREVER), -EINVAL);
    cr_assert_eq(chan_timedrecv(NULL, &v, 0), -EINVAL);
    cr_assert_eq(chan_timedrecv(NULL, &v, TEST_MS), -EINVAL);
    cr_assert_eq(chan_timedrecv(NULL, &v, CHAN_FOREVER), -EINVAL);
    cr_assert_eq(chan_send(NULL, NULL), -EINVAL);
    cr_assert_eq(chan_recv(NULL, NULL), -EINVAL);
    cr_assert_eq(chan_close(NULL), -EINVAL);
    cr_assert_eq(v, SENTINEL);
}

Test(chan, null_elem_send_is_einval)
{
    chan_t *c = chan_make(sizeof(int), 2);
    cr_assert_eq(chan_send(c, NULL), -EINVAL);
    cr_assert_eq(chan_trysend(c, NULL), -EINVAL);
    cr_assert_eq(chan_timedsend(c, NULL, 0), -EINVAL);
    cr_assert_eq(chan_timedsend(c, NULL, TEST_MS), -EINVAL);
    cr_assert_eq(chan_timedsend(c, NULL, CHAN_FOREVER), -EINVAL);
    cr_assert_eq(chan_len(c), 0, "a bad send buffered something");
    /* Also on a full channel, where a good send would block. */
    cr_assert_eq(chan_send(c, &(int){ 1 }), 0);
    cr_assert_eq(chan_send(c, &(int){ 2 }), 0);
    cr_assert_eq(chan_send(c, NULL), -EINVAL);
    cr_assert_eq(chan_timedsend(c, NULL, CHAN_FOREVER), -EINVAL);
    /* And on a closed one. */
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_send(c, NULL), -EINVAL);
    chan_release(c);
}

Test(chan, null_elem_send_does_not_consume_a_receiver)
{
    chan_t *c = chan_make(sizeof(int), 0);
    struct op r;
    op_start_blocked(&r, c, OP_RECV, SENTINEL, 0);
    cr_assert_eq(chan_send(c, NULL), -EINVAL);
    cr_assert_eq(chan_trysend(c, NULL), -EINVAL);
    cr_assert_eq(chan_timedsend(c, NULL, TEST_MS), -EINVAL);
    cr_assert(test_stays_zero(&r.call.done, 20 * TEST_MS),
              "a bad send released a receiver");
    cr_assert_eq(chan_send(c, &(int){ 5 }), 0);
    cr_assert_eq(op_join(&r), 0);
    cr_assert_eq(r.value, 5);
    chan_release(c);
}

/* ------------------------------------------------------------------ */
/* errno                                                              */

/* The library reports errors only through return values: errno, which a
 * task that changes threads cannot trust, is neither read nor written. */
#define ERRNO_MARK 4242

Test(chan, errno_left_alone)
{
    errno = ERRNO_MARK;
    cr_assert_null(chan_make(2, SIZE_MAX / 2 + 1));
    cr_assert_eq(errno, ERRNO_MARK, "chan_make (overflow) set errno %d", errno);
    cr_assert_null(chan_make(1, SIZE_MAX / 4));
    cr_assert_eq(errno, ERRNO_MARK, "chan_make (no memory) set errno %d", errno);

    chan_t *c = chan_make(sizeof(int), 0);
    int v;
    cr_assert_eq(chan_timedrecv(c, &v, TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_timedsend(c, &v, TEST_MS), -ETIMEDOUT);
    cr_assert_eq(chan_tryrecv(c, &v), -EAGAIN);
    cr_assert_eq(chan_send(c, NULL), -EINVAL);
    cr_assert_eq(chan_recv(NULL, &v), -EINVAL);
    cr_assert_eq(errno, ERRNO_MARK, "errno changed to %d", errno);
    struct op r;
    op_start_blocked(&r, c, OP_RECV, SENTINEL, 0);
    cr_assert_eq(chan_send(c, &(int){ 1 }), 0);
    cr_assert_eq(op_join(&r), 0);
    cr_assert_eq(chan_close(c), 0);
    cr_assert_eq(chan_close(c), -EPIPE);
    cr_assert_eq(chan_send(c, &v), -EPIPE);
    cr_assert_eq(chan_recv(c, &v), -EPIPE);
    cr_assert_eq(errno, ERRNO_MARK, "errno changed to %d", errno);
    chan_release(c);
    cr_assert_eq(errno, ERRNO_MARK, "chan_release set errno %d", errno);
}
