/*
 * signal_inherited.c - the tests of signal.c again, in a process that
 * starts the way a careless parent may leave it: every signal that can be
 * ignored set to SIG_IGN (as nohup does for SIGHUP, and a shell for SIGINT
 * in a background job) and every signal blocked.  Both survive fork() and
 * exec(), so the test runner and every test process inherit them here just
 * as they would from such a parent.  Each test must set the dispositions
 * and the mask it relies on itself, and the library must deliver a
 * watched signal though the application blocks it.
 *
 * SIGCHLD keeps its default action: ignoring it would make the kernel reap
 * the runner's test processes before the runner can wait for them.  It is
 * blocked like the rest.
 */
#include <signal.h>
#include <string.h>

__attribute__((constructor)) static void inherit_a_hostile_signal_state(void)
{
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP && s != SIGCHLD)
            (void)sigaction(s, &ign, NULL); /* fails for reserved ones */
    sigset_t all;
    sigfillset(&all);
    (void)sigprocmask(SIG_SETMASK, &all, NULL);
}

#include "signal.c"
