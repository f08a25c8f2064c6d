/* main.c - links with libchan::chan and uses it: a thread sends three
 * numbers on a buffered channel and closes it, main receives them until
 * the close.  Prints "cmake consumer: 6" on success. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#include <chan.h>

static void *producer(void *arg)
{
    chan_t *ch = arg;
    for (int i = 1; i <= 3; i++)
        if (chan_send(ch, &i) != 0)
            break;
    chan_close(ch);
    return NULL;
}

int main(void)
{
    chan_t *ch = chan_make(sizeof(int), 2);
    if (!ch || chan_cap(ch) != 2)
        return 1;
    pthread_t t;
    if (pthread_create(&t, NULL, producer, ch) != 0)
        return 1;
    int v, sum = 0, rc;
    while ((rc = chan_recv(ch, &v)) == 0)
        sum += v;
    pthread_join(t, NULL);
    chan_release(ch);
    if (rc != -EPIPE || sum != 6)
        return 1;
    printf("cmake consumer: %d\n", sum);
    return 0;
}
