/* Futex-heavy: THREADS threads (default 4) take one glibc mutex in a loop,
 * with a short critical section (a few shared counter updates) and a little
 * work between acquisitions, so the lock is contended and its waits are
 * short. One op is one lock acquisition.  Usage: shortcs SECONDS WARMUP [THREADS] */
#include "bench.h" /* first: it defines _GNU_SOURCE */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long shared[8];

static void *worker(void *arg) {
    long me = (long)arg;
    unsigned long local = (unsigned long)me;
    while (!bench_stopped()) {
        pthread_mutex_lock(&lock);
        for (int i = 0; i < 8; i++) shared[i] += local;
        pthread_mutex_unlock(&lock);
        for (int i = 0; i < 64; i++) local = local * 6364136223846793005ul + 1442695040888963407ul;
        bench_count(me);
    }
    return NULL;
}

int main(int argc, char **argv) { return bench_threads_main(argc, argv, "shortcs", worker); }
