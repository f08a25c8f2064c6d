/*
 * misuse.c - tests of the mistakes that the library names: chan_elem_size
 * and the typed CHAN_SEND / CHAN_RECV family that refuse a value of the
 * wrong size.
 */
#include "util.h"

TestSuite(misuse, .timeout = TEST_TIMEOUT_S);

/* ------------------------------------------------------------------ */
/* chan_elem_size and the typed forms                                 */

Test(misuse, elem_size)
{
    cr_assert_eq(chan_elem_size(NULL), 0);
    size_t sizes[] = { 0, 1, 3, sizeof(int), sizeof(int64_t), 1000 };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        for (size_t cap = 0; cap < 3; cap++) {
            chan_t *ch = chan_make(sizes[i], cap);
            cr_assert_not_null(ch);
            cr_assert_eq(chan_elem_size(ch), sizes[i]);
            chan_release(ch);
        }
    }
}

struct point {
    int x, y;
};

Test(misuse, typed_matching_sizes)
{
    chan_t *ch = chan_make(sizeof(int), 4);
    int x = 5, got = 0;
    cr_assert_eq(CHAN_SEND(ch, x), 0);
    cr_assert_eq(CHAN_TRYSEND(ch, x), 0);
    int arr[2] = { 7, 8 }, k = 0;
    cr_assert_eq(CHAN_SEND(ch, arr[k++]), 0);
    cr_assert_eq(k, 1, "the value was evaluated more than once");
    cr_assert_eq(chan_len(ch), 3);
    cr_assert_eq(CHAN_RECV(ch, &got), 0);
    cr_assert_eq(got, 5);
    cr_assert_eq(CHAN_TRYRECV(ch, &got), 0);
    cr_assert_eq(got, 5);
    cr_assert_eq(CHAN_RECV(ch, &got), 0);
    cr_assert_eq(got, 7);
    cr_assert_eq(CHAN_TRYRECV(ch, &got), -EAGAIN);
#if defined(__GNUC__) || defined(__clang__)
    /* Any expression, copied first (GNU C). */
    cr_assert_eq(CHAN_SEND(ch, 40 + 2), 0);
    cr_assert_eq(CHAN_RECV(ch, &got), 0);
    cr_assert_eq(got, 42);
#endif
    chan_release(ch);

    chan_t *pc = chan_make(sizeof(struct point), 0);
    struct point p = { 1, 2 }, q = { 0, 0 };
    cr_assert_eq(CHAN_TRYSEND(pc, p), -EAGAIN); /* nobody receives */
    cr_assert_eq(chan_close(pc), 0);
    cr_assert_eq(CHAN_SEND(pc, p), -EPIPE);
    cr_assert_eq(CHAN_RECV(pc, &q), -EPIPE);
    chan_release(pc);
}

Test(misuse, typed_mismatch_is_refused)
{
    chan_t *ch = chan_make(sizeof(int64_t), 4);
    int small = 3;
    int64_t big = 9, got = -1;
    cr_assert_eq(CHAN_SEND(ch, small), -EINVAL);
    cr_assert_eq(CHAN_TRYSEND(ch, small), -EINVAL);
    cr_assert_eq(chan_len(ch), 0, "a refused send sent something");
    cr_assert_eq(CHAN_SEND(ch, big), 0);
    int small_got = -1;
    cr_assert_eq(CHAN_RECV(ch, &small_got), -EINVAL);
    cr_assert_eq(CHAN_TRYRECV(ch, &small_got), -EINVAL);
    cr_assert_eq(small_got, -1, "a refused receive wrote");
    cr_assert_eq(chan_len(ch), 1, "a refused receive took the value");
    struct point p = { 1, 2 };
    cr_assert_eq(sizeof p, sizeof big); /* same size: accepted */
    cr_assert_eq(CHAN_RECV(ch, &got), 0);
    cr_assert_eq(got, 9);
    /* Mismatch on an empty channel: -EINVAL, not -EAGAIN or a block. */
    cr_assert_eq(CHAN_RECV(ch, &small_got), -EINVAL);
    char c = 'c';
    cr_assert_eq(CHAN_SEND(ch, c), -EINVAL);
    cr_assert_eq(chan_len(ch), 0);
    /* NULL channel. */
    chan_t *none = NULL;
    cr_assert_eq(CHAN_SEND(none, big), -EINVAL);
    cr_assert_eq(CHAN_RECV(none, &got), -EINVAL);
    cr_assert_eq(CHAN_TRYSEND(none, big), -EINVAL);
    cr_assert_eq(CHAN_TRYRECV(none, &got), -EINVAL);
    chan_release(ch);

    /* Unbuffered: a refused send must not block either. */
    chan_t *u = chan_make(sizeof(short), 0);
    cr_assert_eq(CHAN_SEND(u, big), -EINVAL);
    cr_assert_eq(CHAN_RECV(u, &got), -EINVAL);
    chan_release(u);
}
