/*
 * thread.c - the library's own background threads (the timer thread, the
 * signal relay): detached, so they never keep the process alive, and with
 * every signal blocked, so that the application's signals are handled on
 * the application's threads.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>

int chan__thread_start_quiet(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t all, old;
    int saved_errno = chan__errno_save();
    if (pthread_attr_init(&attr) != 0) {
        chan__errno_restore(saved_errno);
        return -ENOMEM;
    }
    chan__check(pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED));
    /* A new thread inherits its creator's mask: block everything for the
     * create, then restore the caller's own mask. */
    sigfillset(&all);
    chan__check(pthread_sigmask(SIG_SETMASK, &all, &old));
    int e = pthread_create(&tid, &attr, fn, arg);
    chan__check(pthread_sigmask(SIG_SETMASK, &old, NULL));
    pthread_attr_destroy(&attr);
    chan__errno_restore(saved_errno);
    return e == 0 ? 0 : -ENOMEM;
}
