/* A mostly idle service: a dispatcher hands one request every PERIOD_US
 * (default 1000) to a pool of 4 workers parked on a condition variable; one
 * worker wakes, does about 5 us of work, and signals completion, which the
 * dispatcher waits for. Nothing is contended: the threads sleep almost all
 * the time. One op is one request; `latency_ns` is the mean time from
 * handing a request over to seeing it done (the cost shows here, not in
 * ops_per_sec, which the period fixes).
 * Usage: idle SECONDS WARMUP [PERIOD_US] */
#include "bench.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>

#define WORKERS 4

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static pthread_cond_t done = PTHREAD_COND_INITIALIZER;
static unsigned long posted, taken, finished;
static int stop;
static volatile unsigned long sink;

static void *worker(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (taken == posted && !stop) pthread_cond_wait(&work, &lock);
        if (stop) break;
        taken++;
        pthread_mutex_unlock(&lock);
        unsigned long long until = bench_now_ns() + 5000;
        unsigned long x = taken;
        while (bench_now_ns() < until) x = x * 6364136223846793005ul + 1;
        sink = x;
        pthread_mutex_lock(&lock);
        finished++;
        pthread_cond_signal(&done);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

/* One request; returns its latency. */
static unsigned long long request(void) {
    unsigned long long t = bench_now_ns();
    pthread_mutex_lock(&lock);
    unsigned long target = ++posted;
    pthread_cond_signal(&work);
    while (finished < target) pthread_cond_wait(&done, &lock);
    pthread_mutex_unlock(&lock);
    return bench_now_ns() - t;
}

int main(int argc, char **argv) {
    unsigned long long seconds, warmup;
    bench_args(argc, argv, " [PERIOD_US]", &seconds, &warmup);
    long period_us = argc > 3 ? atol(argv[3]) : 1000;
    if (period_us < 1) period_us = 1000;
    pthread_t t[WORKERS];
    for (int i = 0; i < WORKERS; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0) return 1;
    unsigned long long until = bench_now_ns() + warmup;
    while (bench_now_ns() < until) {
        request();
        bench_sleep_ns((unsigned long long)period_us * 1000);
    }
    bench_start("idle");
    unsigned long long t0 = bench_now_ns(), ops = 0, latency = 0;
    until = t0 + seconds;
    while (bench_now_ns() < until) {
        latency += request();
        ops++;
        bench_sleep_ns((unsigned long long)period_us * 1000);
    }
    unsigned long long elapsed = bench_now_ns() - t0;
    pthread_mutex_lock(&lock);
    stop = 1;
    pthread_cond_broadcast(&work);
    pthread_mutex_unlock(&lock);
    for (int i = 0; i < WORKERS; i++) pthread_join(t[i], NULL);
    char extra[64];
    snprintf(extra, sizeof extra, ",\"latency_ns\":%.1f,\"period_us\":%ld",
             ops ? (double)latency / (double)ops : 0.0, period_us);
    bench_result("idle", ops, elapsed, extra);
    return 0;
}
