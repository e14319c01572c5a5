/* Thread lifecycles around waits. Usage:
 *   c_lifecycle stuck SECONDS   a thread named "stuck" starts, after one
 *                               second, to wait on a condvar nobody
 *                               signals; main exits after SECONDS.
 *   c_lifecycle exit            three "idle-N" threads wait on a condvar;
 *                               main calls exit() while they are blocked.
 * Prints its ground truth (pid, main tid, the waiting tids) before exiting. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WORKLOAD_NAME "c_lifecycle"
#include "workload.h"

#define IDLE 3

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static atomic_int started;
static pid_t tids[IDLE];

static void *wait_forever(void *arg) {
    long i = (long)arg;
    char name[32];
    if (i < 0)
        snprintf(name, sizeof name, "stuck");
    else
        snprintf(name, sizeof name, "idle-%d", (int)i);
    pthread_setname_np(pthread_self(), name);
    tids[i < 0 ? 0 : i] = get_tid();
    if (i < 0)
        sleep_ms(1000); /* a tracer attaching meanwhile sees the wait begin */
    pthread_mutex_lock(&mu);
    atomic_fetch_add(&started, 1);
    for (;;)
        pthread_cond_wait(&never, &mu);
    return NULL;
}

static void print_truth(const char *mode, int n) {
    printf("{\"workload\":\"c_lifecycle\",\"mode\":\"%s\",\"pid\":%d,\"main_tid\":%d,\"tids\":[",
           mode, getpid(), get_tid());
    for (int i = 0; i < n; i++) printf("%s%d", i ? "," : "", tids[i]);
    printf("],\"cond_addr\":\"%p\"}\n", (void *)&never);
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "exit";
    int n = strcmp(mode, "stuck") == 0 ? 1 : IDLE;
    pthread_t t;
    for (long i = 0; i < n; i++) {
        int err = pthread_create(&t, NULL, wait_forever, (void *)(n == 1 ? -1L : i));
        if (err) die("pthread_create", err);
    }
    if (n == 1) {
        sleep_ms(1000L * (argc > 2 ? atol(argv[2]) : 3));
    } else {
        while (atomic_load(&started) < n) sleep_ms(1);
        sleep_ms(200); /* let them block */
    }
    print_truth(mode, n);
    exit(0); /* kills the blocked threads (exit_group) */
}
