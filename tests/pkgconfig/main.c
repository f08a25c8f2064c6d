/* main.c - links with libchan as pkg-config describes it and uses its
 * scheduler: a task sends three numbers on an unbuffered channel, main
 * receives them.  Prints "pkg-config consumer: 6" on success. */
#include <stdio.h>

#include <chan.h>

static void sender(void *arg)
{
    chan_t *ch = arg;
    for (int i = 1; i <= 3; i++)
        if (chan_send(ch, &i) != 0)
            return;
}

int main(void)
{
    chan_sched_t *s = chan_sched_new(NULL);
    chan_t *ch = chan_make(sizeof(int), 0);
    if (!s || !ch || chan_go(s, sender, ch) != 0)
        return 1;
    int v, sum = 0;
    for (int i = 0; i < 3; i++) {
        if (chan_recv(ch, &v) != 0)
            return 1;
        sum += v;
    }
    if (chan_sched_wait(s) != 0)
        return 1;
    chan_sched_free(s);
    chan_release(ch);
    if (sum != 6)
        return 1;
    printf("pkg-config consumer: %d\n", sum);
    return 0;
}
