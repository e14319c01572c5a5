/* Kernel lock contention: THREADS threads (default 4) map 64 KiB of
 * anonymous memory, touch it and unmap it, in a loop. mmap and munmap take
 * the process's mmap_lock for writing, so the threads queue on it inside
 * the kernel: the workload for spanlet's --kernel-locks programs. One op
 * is one map/unmap cycle.  Usage: mmaplock SECONDS WARMUP [THREADS] */
#include "bench.h" /* first: it defines _GNU_SOURCE */

#include <sys/mman.h>

#define MAP_BYTES (64 * 1024)
#define PAGE 4096

static void *worker(void *arg) {
    long me = (long)arg;
    while (!bench_stopped()) {
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
        bench_count(me);
    }
    return NULL;
}

int main(int argc, char **argv) { return bench_threads_main(argc, argv, "mmaplock", worker); }
