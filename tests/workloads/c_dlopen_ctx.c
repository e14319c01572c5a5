/* Thread context from a library loaded after the process started: the
 * program prints its threads' ids, waits for a line on stdin, then dlopens
 * the OTEP 4947 writer (libotelctx_ie.so, initial-exec TLS, which glibc
 * places in static TLS even when dlopened), waits SETTLE_MS so a tracer's
 * periodic re-check can find it, and only then contends: a holder in trace
 * D holds a mutex that one waiter, in trace E, blocks on.
 * Usage: c_dlopen_ctx LIBRARY HOLD_MS SETTLE_MS */
#define WORKLOAD_NAME "c_dlopen_ctx"
#include "workload.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>

typedef void (*attach_fn)(const uint8_t[16], const uint8_t[8]);
typedef void (*detach_fn)(void);

static attach_fn attach;
static detach_fn detach;
static long hold_ms;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t ready, start, held;
static pid_t tids[2];

/* Thread `i` reports its tid, waits for the library, then attaches a
 * context whose trace id bytes are all `trace` and span id bytes `span`. */
static void begin_traced(int i, uint8_t trace, uint8_t span) {
    tids[i] = get_tid();
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&start);
    uint8_t t[16], s[8];
    memset(t, trace, 16);
    memset(s, span, 8);
    attach(t, s);
}

static void *holder(void *arg) {
    (void)arg;
    begin_traced(0, 0xdd, 0xd1);
    pthread_mutex_lock(&lock);
    pthread_barrier_wait(&held);
    sleep_ms(hold_ms);
    pthread_mutex_unlock(&lock);
    detach();
    return NULL;
}

static void *waiter(void *arg) {
    (void)arg;
    begin_traced(1, 0xee, 0xe1);
    pthread_barrier_wait(&held);
    pthread_mutex_lock(&lock);
    pthread_mutex_unlock(&lock);
    detach();
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) die("usage: c_dlopen_ctx LIBRARY HOLD_MS SETTLE_MS", EINVAL);
    hold_ms = atol(argv[2]);
    long settle_ms = atol(argv[3]);
    pthread_barrier_init(&ready, NULL, 3);
    pthread_barrier_init(&start, NULL, 3);
    pthread_barrier_init(&held, NULL, 3);
    pthread_t threads[2];
    pthread_create(&threads[0], NULL, holder, NULL);
    pthread_create(&threads[1], NULL, waiter, NULL);
    pthread_barrier_wait(&ready);
    printf("{\"pid\":%d,\"holder\":%d,\"waiters\":[%d]}\n", getpid(), tids[0], tids[1]);
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) die("no go line on stdin", EIO);
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    attach = (attach_fn)dlsym(lib, "otel_ctx_attach");
    detach = (detach_fn)dlsym(lib, "otel_ctx_detach");
    if (!attach || !detach) die("dlsym", ENOENT);
    /* Publish once from the main thread, so the library's TLS access is
     * resolved, then give a tracer time to look again. */
    uint8_t t[16] = {0}, s[8] = {0};
    attach(t, s);
    detach();
    sleep_ms(settle_ms);
    pthread_barrier_wait(&start);
    pthread_barrier_wait(&held);
    pthread_join(threads[0], NULL);
    pthread_join(threads[1], NULL);
    return 0;
}
