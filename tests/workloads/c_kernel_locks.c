/* Kernel lock contention: THREADS threads each map a region of anonymous
 * memory, then for MS milliseconds touch it and change its protection back
 * and forth. mprotect takes the process's mmap_lock (an rwsem) for writing
 * and keeps it so (munmap would downgrade it to a read lock, which names no
 * owner), so the threads queue on it in the kernel behind a writer, with
 * no user-space lock anywhere.
 *
 * Usage: c_kernel_locks [THREADS] [MS]
 * Prints one JSON line of ground truth at the end: pid, the worker tids,
 * iterations, and the Unix-time window of the loop. */
#define WORKLOAD_NAME "c_kernel_locks"
#include "workload.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#define MAX_THREADS 16
#define MAP_BYTES (256 * 1024)
#define PAGE 4096

static pid_t tids[MAX_THREADS];
static unsigned long long iterations[MAX_THREADS];
static unsigned long long deadline_mono;
static atomic_int ready;

static void *worker(void *arg) {
    int i = (int)(long)arg;
    tids[i] = get_tid();
    atomic_fetch_add(&ready, 1);
    char *p = mmap(NULL, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) die("mmap", errno);
    while (mono_ns() < deadline_mono) {
        for (size_t off = 0; off < MAP_BYTES; off += PAGE) p[off]++;
        if (mprotect(p, MAP_BYTES, PROT_READ) != 0) die("mprotect", errno);
        if (mprotect(p, MAP_BYTES, PROT_READ | PROT_WRITE) != 0) die("mprotect", errno);
        iterations[i]++;
    }
    if (munmap(p, MAP_BYTES) != 0) die("munmap", errno);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    long ms = argc > 2 ? atol(argv[2]) : 1500;
    if (threads < 2 || threads > MAX_THREADS || ms <= 0) {
        fprintf(stderr, "usage: %s [THREADS 2..%d] [MS]\n", WORKLOAD_NAME, MAX_THREADS);
        return 2;
    }
    unsigned long long start = now_unix_ns();
    deadline_mono = mono_ns() + (unsigned long long)ms * 1000000ull;
    pthread_t th[MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        int err = pthread_create(&th[i], NULL, worker, (void *)(long)i);
        if (err) die("pthread_create", err);
    }
    for (int i = 0; i < threads; i++) pthread_join(th[i], NULL);
    unsigned long long end = now_unix_ns(), total = 0;
    printf("{\"workload\":\"%s\",\"pid\":%d,\"tids\":[", WORKLOAD_NAME, getpid());
    for (int i = 0; i < threads; i++) {
        printf("%s%d", i ? "," : "", tids[i]);
        total += iterations[i];
    }
    printf("],\"iterations\":%llu,\"start_unix_nano\":%llu,\"end_unix_nano\":%llu}\n", total, start,
           end);
    return 0;
}
