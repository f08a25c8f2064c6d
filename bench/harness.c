/*
 * harness.c - timing, calibration and reporting for the benchmark
 * programs (see harness.h for the output format).
 */
#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t cpu_ns(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        bench_die("clock_gettime(cpu clock)", -EINVAL);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t bench_thread_cpu_ns(void)
{
    return cpu_ns(CLOCK_THREAD_CPUTIME_ID);
}

int64_t bench_process_cpu_ns(void)
{
    return cpu_ns(CLOCK_PROCESS_CPUTIME_ID);
}

void bench_sleep(double seconds)
{
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

void bench_die(const char *what, int rc)
{
    fprintf(stderr, "bench: %s: %s\n", what, rc < 0 ? strerror(-rc) : "failed");
    exit(1);
}

void bench_check(int ok, const char *workload, const char *what)
{
    if (ok)
        return;
    fprintf(stderr, "bench: %s: check failed: %s\n", workload, what);
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_report(const char *impl, const char *workload, const char *unit,
                    double *vals, int reps, long n)
{
    qsort(vals, (size_t)reps, sizeof *vals, cmp_double);
    double med = reps % 2 ? vals[reps / 2]
                          : (vals[reps / 2 - 1] + vals[reps / 2]) / 2;
    printf("%s\t%s\t%s\t%.1f\t%.1f\t%.1f\t%d\t%ld\n", impl, workload, unit,
           med, vals[0], vals[reps - 1], reps, n);
    fflush(stdout);
    return med;
}

/* Round up to a multiple of 4, at least 4. */
static long round4(long n)
{
    n = (n + 3) & ~3L;
    return n < 4 ? 4 : n;
}

double bench_measure(const char *impl, const char *workload, const char *unit,
                     bench_fn fn, void *ctx, long n0,
                     const struct bench_opts *o)
{
    /* Calibration: a run of at least `enough` seconds is long enough to
     * scale from.  The first runs also warm up caches, the allocator and
     * the library's lazily created state. */
    double enough = o->target / 3 < 0.1 ? o->target / 3 : 0.1;
    long n = round4(n0);
    double t;
    for (;;) {
        t = fn(ctx, n);
        if (t >= enough || n >= (1L << 40))
            break;
        double f = 1.5 * enough / (t > 1e-6 ? t : 1e-6);
        if (f < 2)
            f = 2;
        if (f > 100)
            f = 100;
        n = round4((long)((double)n * f));
    }
    n = round4((long)((double)n * o->target / t));

    double *vals = malloc(sizeof *vals * (size_t)o->reps);
    if (!vals)
        bench_die("malloc", -ENOMEM);
    for (int r = 0; r < o->reps; r++)
        vals[r] = fn(ctx, n) * 1e9 / (double)n;
    double med = bench_report(impl, workload, unit, vals, o->reps, n);
    free(vals);
    return med;
}
