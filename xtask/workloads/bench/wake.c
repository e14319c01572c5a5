/* FUTEX_WAKE on a word nobody waits on, in a loop: the futex call never
 * blocks, so this is the pure per-call cost of whatever watches futex calls.
 * Pinned to one CPU (migrations made runs vary by 20% on a busy VM).
 * One op is one futex syscall.  Usage: wake SECONDS WARMUP */
#include "bench.h"

static atomic_uint word;

/* Calls FUTEX_WAKE until `until_ns`, checking the clock every 256 calls. */
static unsigned long long wake_until(unsigned long long until_ns) {
    unsigned long long calls = 0;
    do {
        for (int i = 0; i < 256; i++) bench_futex(&word, FUTEX_WAKE_PRIVATE, 1);
        calls += 256;
    } while (bench_now_ns() < until_ns);
    return calls;
}

int main(int argc, char **argv) {
    unsigned long long seconds, warmup;
    bench_args(argc, argv, "", &seconds, &warmup);
    bench_pin(0);
    wake_until(bench_now_ns() + warmup);
    bench_start("wake");
    unsigned long long t = bench_now_ns();
    unsigned long long calls = wake_until(t + seconds);
    bench_result("wake", calls, bench_now_ns() - t, "");
    return 0;
}
