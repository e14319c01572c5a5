/*
 * Workload: producer/consumer on a glibc condition variable.
 *
 * The "producer" thread makes one item every PERIOD_MS: it sleeps outside the
 * lock, then locks, queues the item, signals the condvar and unlocks. The
 * "consumer" thread waits on the condvar whenever the queue is empty, so it
 * spends almost all its time blocked in pthread_cond_wait and each wait is
 * ended by the producer's signal.
 *
 * Usage: c_condvar [ITEMS [PERIOD_MS]]   (defaults 50 and 20)
 *
 * Prints one JSON line of ground truth to stdout at the end. glibc (2.25+)
 * waits on __g_signals inside the pthread_cond_t, not on its first word, so
 * the futex address spanlet reports lies in [cond_addr, cond_addr+cond_size).
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

#define WORKLOAD_NAME "c_condvar"
#include "workload.h"

/* Lets both threads name themselves and the consumer reach its first wait
 * before the first item, and spanlet attach if it is a little late. */
#define WARMUP_MS 100

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int queued; /* protected by mu */

static int items = 50;
static int period_ms = 20;

static atomic_int ready;
static pid_t producer_tid, consumer_tid;
static unsigned long long *produced_ns; /* CLOCK_REALTIME of each signal */
static int consumed;

static void *producer_main(void *arg) {
    (void)arg;
    int err = pthread_setname_np(pthread_self(), "producer");
    if (err)
        die("pthread_setname_np", err);
    producer_tid = get_tid();
    atomic_fetch_add(&ready, 1);
    while (atomic_load(&ready) < 2)
        sleep_us(1000);
    sleep_us(WARMUP_MS * 1000L);

    for (int i = 0; i < items; i++) {
        sleep_us(period_ms * 1000L);
        pthread_mutex_lock(&mu);
        queued++;
        produced_ns[i] = now_unix_ns();
        pthread_cond_signal(&cv);
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

static void *consumer_main(void *arg) {
    (void)arg;
    int err = pthread_setname_np(pthread_self(), "consumer");
    if (err)
        die("pthread_setname_np", err);
    consumer_tid = get_tid();
    atomic_fetch_add(&ready, 1);

    for (int i = 0; i < items; i++) {
        pthread_mutex_lock(&mu);
        while (queued == 0)
            pthread_cond_wait(&cv, &mu);
        queued--;
        consumed++;
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1)
        items = atoi(argv[1]);
    if (argc > 2)
        period_ms = atoi(argv[2]);
    if (items < 1 || period_ms < 1) {
        fprintf(stderr, "usage: c_condvar [ITEMS [PERIOD_MS]]\n");
        return 2;
    }
    produced_ns = calloc((size_t)items, sizeof *produced_ns);
    if (!produced_ns)
        die("calloc", ENOMEM);

    pthread_t producer, consumer;
    int err = pthread_create(&consumer, NULL, consumer_main, NULL);
    if (err)
        die("pthread_create", err);
    err = pthread_create(&producer, NULL, producer_main, NULL);
    if (err)
        die("pthread_create", err);
    pthread_join(producer, NULL);
    pthread_join(consumer, NULL);

    printf("{\"workload\":\"c_condvar\",\"pid\":%d,\"main_tid\":%d,"
           "\"cond_addr\":\"0x%lx\",\"cond_size\":%zu,\"mutex_addr\":\"0x%lx\","
           "\"producer_tid\":%d,\"consumer_tid\":%d,\"period_ms\":%d,\"items\":%d,"
           "\"consumed\":%d,\"produced_unix_nano\":[",
           (int)getpid(), (int)get_tid(), (unsigned long)(uintptr_t)&cv, sizeof cv,
           (unsigned long)(uintptr_t)&mu, (int)producer_tid, (int)consumer_tid, period_ms,
           items, consumed);
    for (int i = 0; i < items; i++)
        printf("%s%llu", i ? "," : "", produced_ns[i]);
    printf("]}\n");
    fflush(stdout);
    free(produced_ns);
    return 0;
}
