/*
 * thread.c - the library's own background threads (the timer thread, the
 * signal relay): detached, so they never keep the process alive, and with
 * every signal blocked, so that the application's signals are handled on
 * the application's threads.  And the names of all of the library's
 * threads, workers included, as gdb, top -H, perf and /proc show them.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

void chan__thread_name(const char *name)
{
#if defined(__linux__) && defined(PR_SET_NAME)
    int saved_errno = chan__errno_save();
    (void)prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
    chan__errno_restore(saved_errno);
#else
    (void)name;
#endif
}

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
