/* Two threads hand a token back and forth through one futex word. One op
 * is one round trip. Both threads are pinned to one CPU: every handover is
 * then a wake-up and a context switch on that CPU, without the cross-CPU
 * wake-up interrupts and idle exits that dominate, and vary, in a VM.
 * A waker may be preempted by the thread it woke before it blocks itself,
 * so a round trip holds one or two blocking waits; `blocked_waits` counts
 * the FUTEX_WAITs in the timed phase that slept (returned 0), each one a
 * blocking wait/wake pair.  Usage: pingpong SECONDS WARMUP */
#include "bench.h" /* first: it defines _GNU_SOURCE */

#include <pthread.h>

static atomic_uint turn; /* 1: pong's turn, 0: ping's turn */
static atomic_int stop;
static atomic_ullong blocked;

static void wait_while(unsigned val) {
    while (atomic_load(&turn) == val)
        if (bench_futex(&turn, FUTEX_WAIT_PRIVATE, val) == 0)
            atomic_fetch_add_explicit(&blocked, 1, memory_order_relaxed);
}

static void *pong(void *arg) {
    (void)arg;
    bench_pin(0);
    for (;;) {
        wait_while(0);
        if (atomic_load(&stop)) break;
        atomic_store(&turn, 0);
        bench_futex(&turn, FUTEX_WAKE_PRIVATE, 1);
    }
    return NULL;
}

/* Round trips until `until_ns`, checking the clock every 64 of them. */
static unsigned long long rounds_until(unsigned long long until_ns) {
    unsigned long long rounds = 0;
    do {
        for (int i = 0; i < 64; i++) {
            atomic_store(&turn, 1);
            bench_futex(&turn, FUTEX_WAKE_PRIVATE, 1);
            wait_while(1);
        }
        rounds += 64;
    } while (bench_now_ns() < until_ns);
    return rounds;
}

int main(int argc, char **argv) {
    unsigned long long seconds, warmup;
    bench_args(argc, argv, "", &seconds, &warmup);
    bench_pin(0);
    pthread_t t;
    if (pthread_create(&t, NULL, pong, NULL) != 0) return 1;
    rounds_until(bench_now_ns() + warmup);
    bench_start("pingpong");
    /* Pong is blocked here (it is ping's turn), so the count is exact. */
    unsigned long long before = atomic_load(&blocked), t0 = bench_now_ns();
    unsigned long long rounds = rounds_until(t0 + seconds);
    unsigned long long elapsed = bench_now_ns() - t0, waits = atomic_load(&blocked) - before;
    atomic_store(&stop, 1);
    atomic_store(&turn, 1);
    bench_futex(&turn, FUTEX_WAKE_PRIVATE, 1);
    pthread_join(t, NULL);
    char extra[96];
    snprintf(extra, sizeof extra, ",\"blocked_waits\":%llu,\"blocked_waits_per_op\":%.4f", waits,
             rounds ? (double)waits / (double)rounds : 0.0);
    bench_result("pingpong", rounds, elapsed, extra);
    return 0;
}
