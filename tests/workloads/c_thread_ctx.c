/* glibc pthread mutexes with OpenTelemetry thread context published by a
 * shared library (otel_ctx_lib.c): a holder thread inside trace B holds one
 * mutex per waiter; waiter i, inside trace A_i, blocks on mutex i; the last
 * waiter has no context. Every thread attaches its context first (which
 * also makes the loader resolve the library's TLS access), then the program
 * prints its threads' ids as JSON and waits for a line on stdin, so the
 * test can attach spanlet before anything waits.
 * Usage: c_thread_ctx WAITERS HOLD_MS */
#define WORKLOAD_NAME "c_thread_ctx"
#include "workload.h"

#include <pthread.h>
#include <stdint.h>

void otel_ctx_attach(const uint8_t trace_id[16], const uint8_t span_id[8]);
void otel_ctx_detach(void);

#define MAX_WAITERS 8

static int waiters;
static long hold_ms;
static pthread_mutex_t locks[MAX_WAITERS + 1];
static pthread_barrier_t ready, start, held;
static pid_t tids[MAX_WAITERS + 2]; /* [0] holder, [1 + i] waiter i */

static void ids(uint8_t trace, uint8_t span, uint8_t t[16], uint8_t s[8]) {
    memset(t, trace, 16);
    memset(s, span, 8);
}

static void *holder(void *arg) {
    (void)arg;
    uint8_t t[16], s[8];
    ids(0xcb, 0xc1, t, s);
    otel_ctx_attach(t, s);
    tids[0] = get_tid();
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&start);
    for (int i = 0; i <= waiters; i++) pthread_mutex_lock(&locks[i]);
    pthread_barrier_wait(&held);
    sleep_ms(hold_ms);
    for (int i = 0; i <= waiters; i++) pthread_mutex_unlock(&locks[i]);
    otel_ctx_detach();
    return NULL;
}

static void *waiter(void *arg) {
    int i = (int)(long)arg;
    uint8_t t[16], s[8];
    if (i < waiters) {
        ids((uint8_t)(0xc0 + i), (uint8_t)(0x20 + i), t, s);
        otel_ctx_attach(t, s);
    }
    tids[1 + i] = get_tid();
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&start);
    pthread_barrier_wait(&held);
    pthread_mutex_lock(&locks[i]);
    pthread_mutex_unlock(&locks[i]);
    otel_ctx_detach();
    return NULL;
}

int main(int argc, char **argv) {
    waiters = argc > 1 ? atoi(argv[1]) : 2;
    hold_ms = argc > 2 ? atol(argv[2]) : 300;
    if (waiters < 1 || waiters > MAX_WAITERS) die("WAITERS must be 1..8", EINVAL);
    for (int i = 0; i <= waiters; i++) pthread_mutex_init(&locks[i], NULL);
    unsigned parties = (unsigned)waiters + 3;
    pthread_barrier_init(&ready, NULL, parties);
    pthread_barrier_init(&start, NULL, parties);
    pthread_barrier_init(&held, NULL, parties);
    pthread_t threads[MAX_WAITERS + 2];
    pthread_create(&threads[0], NULL, holder, NULL);
    for (int i = 0; i <= waiters; i++) pthread_create(&threads[1 + i], NULL, waiter, (void *)(long)i);
    pthread_barrier_wait(&ready);
    printf("{\"pid\":%d,\"holder\":%d,\"waiters\":[", getpid(), tids[0]);
    for (int i = 0; i <= waiters; i++) printf("%s%d", i ? "," : "", tids[1 + i]);
    printf("]}\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) die("no go line on stdin", EIO);
    pthread_barrier_wait(&start);
    pthread_barrier_wait(&held);
    for (int i = 0; i <= waiters + 1; i++) pthread_join(threads[i], NULL);
    return 0;
}
