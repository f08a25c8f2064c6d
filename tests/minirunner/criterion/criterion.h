/*
 * criterion.h - a minimal runner for libchan's Criterion tests, for the
 * builds where Criterion itself cannot be used.
 *
 * Criterion's runner cannot start in a ThreadSanitizer build on current
 * kernels: it maps its shared arena at a random address, which TSan has
 * already reserved for its shadow memory ("Could not initialize inheritable
 * arena", Criterion issue #274), and a cross build usually has no Criterion
 * for its host.  So configure --with-test-runner=minimal, the default under
 * ThreadSanitizer, builds the same test sources against this header
 * instead (tests/minirunner/ comes first on the include path).  It
 * implements exactly the subset the tests use:
 * Test() and TestSuite() with .timeout, the cr_assert family, cr_skip_test
 * and cr_log_info.  Like Criterion, it runs each test in its own process,
 * kills it when its timeout expires, and ends with Criterion's Synthesis
 * line.  An optional argument is a glob matched against "suite/test"; with
 * a leading '!', the tests that do not match it run.
 */
#ifndef CHAN_MINIRUNNER_CRITERION_H
#define CHAN_MINIRUNNER_CRITERION_H

#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The options the tests set; fields as in Criterion. */
struct criterion_test_extra_data {
    double timeout;     /* seconds; 0: the suite's, else none */
    int disabled;
};

struct cr__test {
    const char *suite;
    const char *name;
    void (*fn)(void);
    struct criterion_test_extra_data opts;
    struct cr__test *next;
};

struct cr__suite {
    const char *name;
    struct criterion_test_extra_data opts;
    struct cr__suite *next;
};

static struct cr__test *cr__tests, **cr__tests_tail = &cr__tests;
static struct cr__suite *cr__suites;

static inline void cr__add_test(struct cr__test *t)
{
    *cr__tests_tail = t; /* keep source order */
    cr__tests_tail = &t->next;
}

#define Test(suite, name, ...)                                                \
    static void suite##_##name(void);                                         \
    static struct cr__test cr__t_##suite##_##name = {                         \
        #suite, #name, suite##_##name,                                        \
        { __VA_ARGS__ }, NULL };                                              \
    __attribute__((constructor)) static void cr__r_##suite##_##name(void)     \
    {                                                                         \
        cr__add_test(&cr__t_##suite##_##name);                                \
    }                                                                         \
    static void suite##_##name(void)

#define TestSuite(suite, ...)                                                 \
    static struct cr__suite cr__s_##suite = { #suite, { __VA_ARGS__ }, NULL };\
    __attribute__((constructor)) static void cr__rs_##suite(void)             \
    {                                                                         \
        cr__s_##suite.next = cr__suites;                                      \
        cr__suites = &cr__s_##suite;                                          \
    }

__attribute__((noreturn))
static void cr__fail(const char *file, int line, const char *expr,
                     const char *fmt, ...)
{
    fprintf(stderr, "%s:%d: Assertion failed: %s", file, line, expr);
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        fputs(": ", stderr);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    }
    fputc('\n', stderr);
    _exit(1);
}

/* "" __VA_ARGS__ turns an absent message into "" and a present one's
 * format string into itself. */
#define cr_assert(c, ...)                                                     \
    do {                                                                      \
        if (!(c))                                                             \
            cr__fail(__FILE__, __LINE__, #c, "" __VA_ARGS__);                 \
    } while (0)
#define cr__cmp(a, op, b, ...)                                                \
    do {                                                                      \
        if (!((a) op (b)))                                                    \
            cr__fail(__FILE__, __LINE__, #a " " #op " " #b, "" __VA_ARGS__);  \
    } while (0)
#define cr_assert_eq(a, b, ...)  cr__cmp(a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) cr__cmp(a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)  cr__cmp(a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) cr__cmp(a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)  cr__cmp(a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) cr__cmp(a, >=, b, __VA_ARGS__)
#define cr_assert_null(a, ...)   cr__cmp((const void *)(a), ==, NULL, __VA_ARGS__)
#define cr_assert_not_null(a, ...) cr__cmp((const void *)(a), !=, NULL, __VA_ARGS__)

/* A skipped test exits with this status; the runner counts it apart. */
#define CR__SKIP_STATUS 77
#define cr_skip_test(...)                                                     \
    do {                                                                      \
        fprintf(stderr, "skipped: " __VA_ARGS__);                             \
        fputc('\n', stderr);                                                  \
        _exit(CR__SKIP_STATUS);                                               \
    } while (0)
#define cr_log_info(...)                                                      \
    do {                                                                      \
        fprintf(stderr, "[----] " __VA_ARGS__);                               \
        fputc('\n', stderr);                                                  \
    } while (0)

static double cr__timeout_of(const struct cr__test *t)
{
    if (t->opts.timeout > 0)
        return t->opts.timeout;
    for (const struct cr__suite *s = cr__suites; s; s = s->next)
        if (strcmp(s->name, t->suite) == 0)
            return s->opts.timeout;
    return 0;
}

int main(int argc, char **argv)
{
    int tested = 0, passing = 0, failing = 0, crashing = 0, skipped = 0;
    const char *glob = argc > 1 ? argv[1] : NULL;
    int negate = glob && glob[0] == '!';
    if (negate)
        glob++;
    for (struct cr__test *t = cr__tests; t; t = t->next) {
        char full[256];
        snprintf(full, sizeof full, "%s/%s", t->suite, t->name);
        if (t->opts.disabled ||
            (glob && (fnmatch(glob, full, 0) == 0) == negate))
            continue;
        double timeout = cr__timeout_of(t);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 2;
        }
        if (pid == 0) {
            /* The timeout is a SIGALRM: make sure that it can kill, whatever
             * disposition and mask the runner inherited. */
            sigset_t alrm;
            sigemptyset(&alrm);
            sigaddset(&alrm, SIGALRM);
            signal(SIGALRM, SIG_DFL);
            sigprocmask(SIG_UNBLOCK, &alrm, NULL);
            if (timeout > 0)
                alarm((unsigned)timeout + 1);
            t->fn();
            fflush(NULL);
            _exit(0);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
            ;
        tested++;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            passing++;
        } else if (WIFEXITED(st) && WEXITSTATUS(st) == CR__SKIP_STATUS) {
            tested--;
            skipped++;
            printf("[SKIP] %s\n", full);
        } else if (WIFSIGNALED(st)) {
            crashing++;
            printf("[FAIL] %s: %s%s\n", full, strsignal(WTERMSIG(st)),
                   WTERMSIG(st) == SIGALRM ? " (timed out)" : "");
        } else {
            failing++;
            printf("[FAIL] %s: exit status %d\n", full, WEXITSTATUS(st));
        }
        fflush(stdout);
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | "
           "Crashing: %d \n", tested, passing, failing, crashing);
    if (skipped)
        printf("[====] %d skipped\n", skipped);
    return failing + crashing != 0;
}

#endif /* CHAN_MINIRUNNER_CRITERION_H */
