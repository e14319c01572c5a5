/* Kernel lock contention: THREADS threads (default 4) map 64 KiB of
 * anonymous memory, touch it and unmap it, in a loop. mmap and munmap take
 * the process's mmap_lock for writing, so the threads queue on it inside
 * the kernel: the workload for spanlet's --kernel-locks programs. One op
 * is one map/unmap cycle.  Usage: mmaplock SECONDS WARMUP [THREADS] */
#include "bench.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>
#include <sys/mman.h>

#define MAX_THREADS 64
#define MAP_BYTES (64 * 1024)
#define PAGE 4096

static atomic_int stop;
static struct {
    atomic_ullong ops;
    char pad[56];
} counters[MAX_THREADS];

static void *worker(void *arg) {
    long me = (long)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        char *p = mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            perror("mmaplock: mmap");
            exit(1);
        }
        for (size_t off = 0; off < MAP_BYTES; off += PAGE) p[off] = 1;
        if (munmap(p, MAP_BYTES) != 0) {
            perror("mmaplock: munmap");
            exit(1);
        }
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
    bench_start("mmaplock");
    unsigned long long t0 = bench_now_ns(), before = total_ops(threads);
    bench_sleep_ns(seconds);
    unsigned long long ops = total_ops(threads) - before, elapsed = bench_now_ns() - t0;
    atomic_store(&stop, 1);
    for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    char extra[32];
    snprintf(extra, sizeof extra, ",\"threads\":%d", threads);
    bench_result("mmaplock", ops, elapsed, extra);
    return 0;
}
