/*
 * line.c - how long this machine's CPUs take to pass a cache line to each
 * other: two threads take turns on one 64-byte-aligned word, each storing
 * its turn's number and spinning until the other has answered.  Prints the
 * median of 5 runs of 1,000,000 round trips, in ns per round trip (two
 * passes of the line).  No libchan in it: it tells what every hand-off
 * between two CPUs costs here at the moment, for reading the other
 * benchmarks' figures (bench/RESULTS.md).  A machine whose scheduler puts
 * both threads on one CPU measures the time to switch between them.
 *
 *   bench/bench_line
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { TRIPS = 1000000, RUNS = 5 };

static _Alignas(64) _Atomic long word;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Answers each odd number with the next even one. */
static void *answer(void *arg)
{
    long base = *(long *)arg;
    for (long i = 0; i < TRIPS; i++) {
        long want = base + 2 * i + 1;
        while (atomic_load_explicit(&word, memory_order_acquire) != want)
            ;
        atomic_store_explicit(&word, want + 1, memory_order_release);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(void)
{
    double v[RUNS];
    for (int r = 0; r < RUNS; r++) {
        long base = (long)r * 2 * TRIPS;
        atomic_store(&word, base);
        pthread_t t;
        if (pthread_create(&t, NULL, answer, &base) != 0) {
            fprintf(stderr, "bench_line: pthread_create failed\n");
            return 1;
        }
        double t0 = now();
        for (long i = 0; i < TRIPS; i++) {
            atomic_store_explicit(&word, base + 2 * i + 1,
                                  memory_order_release);
            while (atomic_load_explicit(&word, memory_order_acquire) !=
                   base + 2 * i + 2)
                ;
        }
        v[r] = (now() - t0) * 1e9 / TRIPS;
        pthread_join(t, NULL);
    }
    qsort(v, RUNS, sizeof v[0], cmp);
    printf("line-rtt\tns\t%.1f\n", v[RUNS / 2]);
    return 0;
}
