/* Futex-heavy: THREADS threads (default 4) take one glibc mutex in a loop,
 * with a short critical section (a few shared counter updates) and a little
 * work between acquisitions, so the lock is contended and its waits are
 * short. One op is one lock acquisition.  Usage: shortcs SECONDS WARMUP [THREADS] */
#include "bench.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>

#define MAX_THREADS 64

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long shared[8];
static atomic_int stop;
static struct {
    atomic_ullong ops;
    char pad[56];
} counters[MAX_THREADS];

static void *worker(void *arg) {
    long me = (long)arg;
    unsigned long local = (unsigned long)me;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        pthread_mutex_lock(&lock);
        for (int i = 0; i < 8; i++) shared[i] += local;
        pthread_mutex_unlock(&lock);
        for (int i = 0; i < 64; i++) local = local * 6364136223846793005ul + 1442695040888963407ul;
        atomic_fetch_add_explicit(&counters[me].ops, 1, memory_order_relaxed);
    }
    return NULL;
}

static unsigned long long total_ops(int threads) {
    unsigned long long sum = 0;
    for (int i = 0; i < threads; i++) sum += atomic_load(&counters[i].ops);
    return sum;
}

int main(int argc, char **argv) {
    unsigned long long seconds, warmup;
    bench_args(argc, argv, " [THREADS]", &seconds, &warmup);
    int threads = argc > 3 ? atoi(argv[3]) : 4;
    if (threads < 1 || threads > MAX_THREADS) threads = 4;
    pthread_t t[MAX_THREADS];
    for (long i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)i) != 0) return 1;
    bench_sleep_ns(warmup);
    bench_start("shortcs");
    unsigned long long t0 = bench_now_ns(), before = total_ops(threads);
    bench_sleep_ns(seconds);
    unsigned long long ops = total_ops(threads) - before, elapsed = bench_now_ns() - t0;
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    char extra[32];
    snprintf(extra, sizeof extra, ",\"threads\":%d", threads);
    bench_result("shortcs", ops, elapsed, extra);
    return 0;
}
