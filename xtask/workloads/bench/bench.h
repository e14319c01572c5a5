/* Shared by the `cargo xtask bench` C workloads.
 *
 * Every workload takes SECONDS and WARMUP (seconds, decimals allowed) as its
 * first two arguments. It runs its loop untimed for WARMUP seconds (so
 * tracer start-up, page faults and frequency ramps fall outside the
 * measurement), then prints `{"bench_start":"NAME"}`, runs the timed phase
 * for SECONDS, and prints one result line:
 *
 *   {"bench":"NAME","ops":N,"seconds":S,"ops_per_sec":X,"total_seconds":T,...}
 *
 * where T is the whole run from main() on. After the result it lingers
 * LINGER_MS, so a harness that samples the tracer on the result line still
 * finds it attached. Lines are flushed as they are printed. */
#ifndef SPANLET_BENCH_H
#define SPANLET_BENCH_H

#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define LINGER_MS 150

static unsigned long long bench_t0;

static inline unsigned long long bench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

static inline void bench_sleep_ns(unsigned long long ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline long bench_futex(atomic_uint *word, int op, unsigned val) {
    return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

/* Parses SECONDS and WARMUP into nanoseconds; exits with usage otherwise. */
static inline void bench_args(int argc, char **argv, const char *usage_rest,
                              unsigned long long *seconds_ns, unsigned long long *warmup_ns) {
    bench_t0 = bench_now_ns();
    double s = argc > 1 ? atof(argv[1]) : 0, w = argc > 2 ? atof(argv[2]) : -1;
    if (s <= 0 || w < 0) {
        fprintf(stderr, "usage: %s SECONDS WARMUP%s\n", argv[0], usage_rest);
        exit(2);
    }
    *seconds_ns = (unsigned long long)(s * 1e9);
    *warmup_ns = (unsigned long long)(w * 1e9);
}

static inline void bench_start(const char *name) {
    printf("{\"bench_start\":\"%s\"}\n", name);
    fflush(stdout);
}

/* `extra` is either "" or more JSON members starting with a comma. */
static inline void bench_result(const char *name, unsigned long long ops,
                                unsigned long long elapsed_ns, const char *extra) {
    double secs = (double)elapsed_ns / 1e9;
    printf("{\"bench\":\"%s\",\"ops\":%llu,\"seconds\":%.6f,\"ops_per_sec\":%.3f,"
           "\"total_seconds\":%.6f%s}\n",
           name, ops, secs, (double)ops / secs, (double)(bench_now_ns() - bench_t0) / 1e9,
           extra);
    fflush(stdout);
    bench_sleep_ns(LINGER_MS * 1000000ull);
}

/* Pins the calling thread to one CPU (modulo the CPUs there are); best effort. */
static inline void bench_pin(int cpu) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % n, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* Workloads of THREADS identical looping threads (shortcs, mmaplock): each
 * worker loops until bench_stopped(), calling bench_count(me) per op. */
#define BENCH_MAX_THREADS 64

static atomic_int bench_stop __attribute__((unused));
static struct {
    atomic_ullong ops;
    char pad[56]; /* one cache line per thread */
} bench_ops[BENCH_MAX_THREADS] __attribute__((unused));

static inline int bench_stopped(void) {
    return atomic_load_explicit(&bench_stop, memory_order_relaxed);
}

static inline void bench_count(long me) {
    atomic_fetch_add_explicit(&bench_ops[me].ops, 1, memory_order_relaxed);
}

static inline unsigned long long bench_total_ops(int threads) {
    unsigned long long sum = 0;
    for (int i = 0; i < threads; i++) sum += atomic_load(&bench_ops[i].ops);
    return sum;
}

/* The whole main of such a workload: `NAME SECONDS WARMUP [THREADS]`
 * (default 4); `worker` gets its index as its argument. */
static inline int bench_threads_main(int argc, char **argv, const char *name,
                                     void *(*worker)(void *)) {
    unsigned long long seconds, warmup;
    bench_args(argc, argv, " [THREADS]", &seconds, &warmup);
    int threads = argc > 3 ? atoi(argv[3]) : 4;
    if (threads < 1 || threads > BENCH_MAX_THREADS) threads = 4;
    pthread_t t[BENCH_MAX_THREADS];
    for (long i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) return 1;
    bench_sleep_ns(warmup);
    bench_start(name);
    unsigned long long t0 = bench_now_ns(), before = bench_total_ops(threads);
    bench_sleep_ns(seconds);
    unsigned long long ops = bench_total_ops(threads) - before, elapsed = bench_now_ns() - t0;
    atomic_store(&bench_stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    char extra[32];
    snprintf(extra, sizeof extra, ",\"threads\":%d", threads);
    bench_result(name, ops, elapsed, extra);
    return 0;
}

#endif
