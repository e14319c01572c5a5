/* Helpers shared by the C test workloads. Define WORKLOAD_NAME before
 * including: it prefixes error messages. */
#ifndef SPANLET_WORKLOAD_H
#define SPANLET_WORKLOAD_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static inline pid_t get_tid(void) { return (pid_t)syscall(SYS_gettid); }

/* Sleeps the whole interval, resuming after signals. */
static inline void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline void sleep_ms(long ms) { sleep_us(ms * 1000L); }

static inline unsigned long long clock_ns(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

/* Wall-clock time, comparable with spanlet's start_unix_nano. */
static inline unsigned long long now_unix_ns(void) { return clock_ns(CLOCK_REALTIME); }

static inline unsigned long long mono_ns(void) { return clock_ns(CLOCK_MONOTONIC); }

static inline void die(const char *what, int err) {
    fprintf(stderr, "%s: %s: %s\n", WORKLOAD_NAME, what, strerror(err));
    exit(1);
}

#endif
