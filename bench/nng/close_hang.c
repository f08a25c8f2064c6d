/*
 * close_hang.c - nng 1.5.2's close hang, on nng alone (no libchan).
 *
 * Each round: a push socket listens on ipc:// (or tcp://127.0.0.1), two
 * puller threads dial it, the pusher sends 2000 messages and then ends the
 * stream with 3-byte messages until no puller is connected; each puller
 * reads until its first 3-byte message and closes its socket.
 *
 *   close_hang resend [ROUNDS] [tcp]   the pusher sends an end of stream
 *                                      every 10 ms while pullers remain,
 *                                      so a closing puller may receive one
 *   close_hang once [ROUNDS] [tcp]     the pusher sends the next one only
 *                                      after a puller has left (what the
 *                                      bridge does)
 *
 * With nng 1.5.2, "resend" usually hangs within a few hundred rounds: a
 * puller's nng_close never returns, because nng's reaper waits for the
 * receive of a connection that was closed while a message arrived on it.
 * The program reports a round that made no progress for 15 s as a hang
 * and exits 3; it prints "ok ROUNDS" otherwise.  Not run by make check.
 */
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PULLERS 2

static char url[128];
static atomic_int pushed_pipes, gone, rounds_done;
static atomic_long progress_ms;

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    (void)arg;
    if (ev == NNG_PIPE_EV_ADD_PRE) {
        pushed_pipes++;
    } else {
        pushed_pipes--;
        gone++;
    }
}

static void *puller(void *arg)
{
    (void)arg;
    nng_socket s;
    if (nng_pull0_open(&s) != 0 || nng_dial(s, url, NULL, NNG_FLAG_NONBLOCK))
        abort();
    for (;;) {
        nng_msg *m;
        if (nng_recvmsg(s, &m, 0) != 0)
            abort();
        size_t len = nng_msg_len(m);
        nng_msg_free(m);
        if (len == 3)
            break;
    }
    nng_close(s); /* where it hangs */
    return NULL;
}

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        sleep(1);
        if (now_ms() - progress_ms > 15000) {
            printf("hang after %d rounds\n", rounds_done);
            fflush(stdout);
            _exit(3);
        }
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "resend") && strcmp(argv[1], "once"))) {
        fprintf(stderr, "usage: close_hang resend|once [ROUNDS] [tcp]\n");
        return 2;
    }
    int once = strcmp(argv[1], "once") == 0;
    int rounds = argc > 2 ? atoi(argv[2]) : 300;
    int tcp = argc > 3 && strcmp(argv[3], "tcp") == 0;
    pthread_t w;
    progress_ms = now_ms();
    pthread_create(&w, NULL, watchdog, NULL);
    for (int r = 0; r < rounds; r++) {
        nng_socket s;
        nng_listener l;
        pushed_pipes = 0;
        if (nng_push0_open(&s) != 0 ||
            nng_pipe_notify(s, NNG_PIPE_EV_ADD_PRE, on_pipe, NULL) != 0 ||
            nng_pipe_notify(s, NNG_PIPE_EV_REM_POST, on_pipe, NULL) != 0)
            return 1;
        if (tcp) {
            int port;
            if (nng_listen(s, "tcp://127.0.0.1:0", &l, 0) != 0 ||
                nng_listener_get_int(l, NNG_OPT_TCP_BOUND_PORT, &port) != 0)
                return 1;
            snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
        } else {
            snprintf(url, sizeof url, "ipc:///tmp/close-hang-%d-%d.ipc",
                     (int)getpid(), r);
            if (nng_listen(s, url, &l, 0) != 0)
                return 1;
        }
        pthread_t t[PULLERS];
        for (int i = 0; i < PULLERS; i++)
            pthread_create(&t[i], NULL, puller, NULL);
        while (pushed_pipes < PULLERS)
            usleep(1000);
        for (int i = 0; i < 2000; i++) {
            nng_msg *m;
            if (nng_msg_alloc(&m, 16) != 0 || nng_sendmsg(s, m, 0) != 0)
                return 1;
        }
        while (pushed_pipes > 0) {
            int before = gone;
            nng_msg *m;
            if (nng_msg_alloc(&m, 3) != 0)
                return 1;
            if (nng_sendmsg(s, m, NNG_FLAG_NONBLOCK) != 0) {
                nng_msg_free(m);
                usleep(1000);
                continue;
            }
            if (once) {
                while (gone == before && pushed_pipes > 0)
                    usleep(1000);
            } else {
                usleep(10000);
            }
        }
        for (int i = 0; i < PULLERS; i++)
            pthread_join(t[i], NULL);
        nng_close(s);
        rounds_done = r + 1;
        progress_ms = now_ms();
    }
    printf("ok %d\n", rounds);
    return 0;
}
