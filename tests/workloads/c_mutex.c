/*
 * Workload: contention on one glibc pthread mutex (default type).
 *
 * A "holder" thread takes the measured mutex, tells the waiters it holds it,
 * sleeps HOLD_MS with the mutex held, unlocks, then sleeps GAP_MS so the
 * waiters drain before the next round. Three "waiter-N" threads lock and
 * unlock the measured mutex once per round, right after the holder took it,
 * so each of them blocks in the kernel for about HOLD_MS.
 *
 * The "holder has it" signal is an atomic round counter that the waiters poll
 * with nanosleep: a condvar or a second mutex would add futex waits of their
 * own, and the tests want the measured mutex to be the only lock with long
 * waits.
 *
 * Usage: c_mutex [ROUNDS [HOLD_MS]]   (defaults 10 and 30)
 *
 * Prints one JSON line of ground truth to stdout at the end. The futex word of
 * a glibc mutex is its first field (__data.__lock), so "addr" is both the
 * mutex's address and the futex address spanlet reports.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WORKLOAD_NAME "c_mutex"
#include "workload.h"

#define NWAITERS 3
/* Sleep before the first round: threads are named and spanlet, if it attaches
 * slightly after the process starts, does not miss round 1. */
#define WARMUP_MS 100
#define GAP_MS 20

static pthread_mutex_t measured = PTHREAD_MUTEX_INITIALIZER;
static unsigned long acquisitions; /* protected by measured */

static int rounds = 10;
static int hold_ms = 30;

/* Round whose hold has started; waiters block on the mutex once it reaches
 * their next round. */
static atomic_int round_no;
/* Threads that have published their tid and name. */
static atomic_int ready;

static pid_t holder_tid;
static pid_t waiter_tids[NWAITERS];
/* [lock, unlock] of each round, CLOCK_REALTIME ns, written by the holder. */
static unsigned long long (*windows)[2];

static void *holder_main(void *arg) {
    (void)arg;
    int err = pthread_setname_np(pthread_self(), "holder");
    if (err)
        die("pthread_setname_np", err);
    holder_tid = get_tid();
    atomic_fetch_add(&ready, 1);
    while (atomic_load(&ready) < NWAITERS + 1)
        sleep_us(1000);
    sleep_us(WARMUP_MS * 1000L);

    for (int r = 1; r <= rounds; r++) {
        pthread_mutex_lock(&measured);
        windows[r - 1][0] = now_unix_ns();
        atomic_store(&round_no, r);
        sleep_us(hold_ms * 1000L);
        windows[r - 1][1] = now_unix_ns();
        pthread_mutex_unlock(&measured);
        sleep_us(GAP_MS * 1000L);
    }
    return NULL;
}

static void *waiter_main(void *arg) {
    int idx = (int)(long)arg;
    char name[16];
    snprintf(name, sizeof name, "waiter-%d", idx);
    int err = pthread_setname_np(pthread_self(), name);
    if (err)
        die("pthread_setname_np", err);
    waiter_tids[idx] = get_tid();
    atomic_fetch_add(&ready, 1);

    for (int r = 1; r <= rounds; r++) {
        /* 200 us polls: cheap, and short next to the 30 ms hold. */
        while (atomic_load(&round_no) < r)
            sleep_us(200);
        pthread_mutex_lock(&measured);
        acquisitions++;
        pthread_mutex_unlock(&measured);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        rounds = atoi(argv[1]);
    if (argc > 2)
        hold_ms = atoi(argv[2]);
    if (rounds < 1 || hold_ms < 1) {
        fprintf(stderr, "usage: c_mutex [ROUNDS [HOLD_MS]]\n");
        return 2;
    }
    windows = calloc((size_t)rounds, sizeof *windows);
    if (!windows)
        die("calloc", ENOMEM);

    pthread_t holder, waiters[NWAITERS];
    int err = pthread_create(&holder, NULL, holder_main, NULL);
    if (err)
        die("pthread_create", err);
    for (long i = 0; i < NWAITERS; i++) {
        err = pthread_create(&waiters[i], NULL, waiter_main, (void *)i);
        if (err)
            die("pthread_create", err);
    }
    pthread_join(holder, NULL);
    for (int i = 0; i < NWAITERS; i++)
        pthread_join(waiters[i], NULL);

    printf("{\"workload\":\"c_mutex\",\"pid\":%d,\"main_tid\":%d,\"addr\":\"0x%lx\","
           "\"holder_tid\":%d,\"waiter_tids\":[",
           (int)getpid(), (int)get_tid(), (unsigned long)(uintptr_t)&measured, (int)holder_tid);
    for (int i = 0; i < NWAITERS; i++)
        printf("%s%d", i ? "," : "", (int)waiter_tids[i]);
    printf("],\"hold_ms\":%d,\"gap_ms\":%d,\"rounds\":%d,\"acquisitions\":%lu,"
           "\"round_windows_unix_nano\":[",
           hold_ms, GAP_MS, rounds, acquisitions);
    for (int r = 0; r < rounds; r++)
        printf("%s[%llu,%llu]", r ? "," : "", windows[r][0], windows[r][1]);
    printf("]}\n");
    fflush(stdout);
    free(windows);
    return 0;
}
