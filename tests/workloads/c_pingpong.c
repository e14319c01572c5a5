/* Two threads hand a token back and forth through one futex word, as fast
 * as they can: many short blocking waits. Used to overflow a small event
 * ring on purpose. Usage: c_pingpong [ROUNDS]. Prints its ground truth. */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static atomic_uint turn;
static long rounds = 20000;
static pid_t pong_tid;

static long futex(atomic_uint *word, int op, unsigned val) {
    return syscall(SYS_futex, word, op, val, NULL, NULL, 0);
}

static void *pong(void *arg) {
    (void)arg;
    pong_tid = (pid_t)syscall(SYS_gettid);
    pthread_setname_np(pthread_self(), "pong");
    for (long i = 0; i < rounds; i++) {
        while (atomic_load(&turn) != 1) futex(&turn, FUTEX_WAIT_PRIVATE, 0);
        atomic_store(&turn, 0);
        futex(&turn, FUTEX_WAKE_PRIVATE, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) rounds = atol(argv[1]);
    pthread_t t;
    if (pthread_create(&t, NULL, pong, NULL) != 0) return 1;
    for (long i = 0; i < rounds; i++) {
        atomic_store(&turn, 1);
        futex(&turn, FUTEX_WAKE_PRIVATE, 1);
        while (atomic_load(&turn) != 0) futex(&turn, FUTEX_WAIT_PRIVATE, 1);
    }
    pthread_join(t, NULL);
    printf("{\"workload\":\"c_pingpong\",\"pid\":%d,\"main_tid\":%d,\"pong_tid\":%d,"
           "\"addr\":\"%p\",\"rounds\":%ld}\n",
           getpid(), getpid(), pong_tid, (void *)&turn, rounds);
    return 0;
}
