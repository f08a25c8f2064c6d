/*
 * typed_pedantic.c - the typed send and receive macros of chan.h must
 * compile in strict ISO C11 with every warning an error: tests/typed.sh
 * compiles this file with -std=c11 -pedantic -Wall -Wextra -Werror, in the
 * GNU C form and with CHAN_TYPED_LVALUES (the standard-C form).  Their
 * behaviour is tested in tests/misuse.c.
 */
#include <chan.h>

struct pair {
    int a;
    double b;
};

int typed_pedantic(chan_t *ch);

int typed_pedantic(chan_t *ch)
{
    int x = 1, arr[3] = { 1, 2, 3 };
    const long cl = 2;
    struct pair p = { 1, 2.0 }, q;
    int rc = 0;
    rc |= CHAN_SEND(ch, x);
    rc |= CHAN_SEND(ch, arr[1]);
    rc |= CHAN_SEND(ch, cl);
    rc |= CHAN_TRYSEND(ch, p);
    rc |= CHAN_RECV(ch, &x);
    rc |= CHAN_TRYRECV(ch, &q);
    rc |= CHAN_RECV(ch, &arr[2]);
    return rc;
}
