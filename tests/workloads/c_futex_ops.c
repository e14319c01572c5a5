/*
 * Workload: one blocking wait of each futex flavour spanlet decodes, run one
 * after the other, each on its own futex word (or mutex) and its own named
 * threads, so a test can find each wait by address and check what spanlet
 * says about it.
 *
 *   pi      PTHREAD_PRIO_INHERIT mutex: "pi-holder" holds it PI_HOLD_MS while
 *           "pi-waiter" blocks in pthread_mutex_lock (glibc: FUTEX_LOCK_PI).
 *   fwait2  futex_wait(2) (syscall 455) by "f2-waiter", woken after
 *           WAKE_AFTER_MS by futex_wake(2) (syscall 454) from "f2-waker".
 *   waitv   futex_waitv(2) (syscall 449) on two words by "wv-waiter", woken
 *           after WAKE_AFTER_MS by FUTEX_WAKE on the first word from
 *           "wv-waker".
 *   timeout FUTEX_WAIT_PRIVATE with a TIMEOUT_MS relative timeout by
 *           "to-waiter"; nobody wakes it.
 *   signal  FUTEX_WAIT_PRIVATE (no timeout) by "sig-waiter", interrupted
 *           after WAKE_AFTER_MS by pthread_kill(SIGUSR1) from "sig-sender"
 *           (handler installed without SA_RESTART, so the wait returns
 *           EINTR).
 *
 * A waker that acts before its waiter has blocked would make the waiter
 * return at once (the word has changed) instead of hanging, so a scheduling
 * hiccup shows as a missing or short wait, never as a stuck workload. For
 * the signal the waiter loops until a flag is set, so a signal that arrives
 * early cannot leave it blocked either.
 *
 * Prints one JSON line of ground truth to stdout at the end: per scenario
 * the futex address, the waiting thread, the other thread (holder, waker or
 * signal sender; 0 for the timeout), the intended duration, the duration the
 * waiter measured around its blocking call, and "result": "ok", or what went
 * wrong (e.g. "ENOSYS" when the kernel lacks the syscall).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WORKLOAD_NAME "c_futex_ops"
#include "workload.h"

#ifndef SYS_futex_waitv
#define SYS_futex_waitv 449
#endif
#ifndef SYS_futex_wake
#define SYS_futex_wake 454
#endif
#ifndef SYS_futex_wait
#define SYS_futex_wait 455
#endif
#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif
#ifndef FUTEX2_PRIVATE
#define FUTEX2_PRIVATE 128
#endif

/* Sleep before the first scenario, so spanlet is surely attached. */
#define WARMUP_MS 50
/* Pause between scenarios, so their waits do not overlap. */
#define GAP_MS 20
#define PI_HOLD_MS 30
#define WAKE_AFTER_MS 20
#define TIMEOUT_MS 25

/* Same layout as the kernel's struct futex_waitv (defined here so older
 * headers still build). */
struct waitv_entry {
    uint64_t val;
    uint64_t uaddr;
    uint32_t flags;
    uint32_t reserved;
};

struct scenario {
    const char *name;
    uintptr_t addr;
    pid_t waiter_tid;
    pid_t other_tid;
    int expected_ms;
    unsigned long long measured_ns;
    char result[64];
};

static void set_name(const char *name) {
    int err = pthread_setname_np(pthread_self(), name);
    if (err)
        die("pthread_setname_np", err);
}

/* Records errno of a failed call as the scenario's result, e.g. "ENOSYS". */
static void set_errno_result(struct scenario *s, const char *call, int err) {
    const char *name = strerrorname_np(err);
    snprintf(s->result, sizeof s->result, "%s: %s", call, name ? name : strerror(err));
}

static void run_pair(void *(*a)(void *), void *(*b)(void *), void *arg) {
    pthread_t ta, tb;
    int err = pthread_create(&ta, NULL, a, arg);
    if (err)
        die("pthread_create", err);
    if (b) {
        err = pthread_create(&tb, NULL, b, arg);
        if (err)
            die("pthread_create", err);
    }
    pthread_join(ta, NULL);
    if (b)
        pthread_join(tb, NULL);
}

/* Each waiter publishes its tid here and sets *_blocking right before its
 * blocking call; the other thread starts its clock from that. */
static atomic_int waiter_ready;

static void wait_for_waiter(void) {
    while (!atomic_load(&waiter_ready))
        sleep_ms(1);
}

/* ---- pi ---------------------------------------------------------------- */

static pthread_mutex_t pi_mutex;
static atomic_int pi_held;
static struct scenario pi = {.name = "pi", .expected_ms = PI_HOLD_MS};

static void *pi_holder(void *arg) {
    (void)arg;
    set_name("pi-holder");
    pi.other_tid = get_tid();
    int err = pthread_mutex_lock(&pi_mutex);
    if (err)
        die("pthread_mutex_lock (pi holder)", err);
    atomic_store(&pi_held, 1);
    sleep_ms(PI_HOLD_MS);
    pthread_mutex_unlock(&pi_mutex);
    return NULL;
}

static void *pi_waiter(void *arg) {
    (void)arg;
    set_name("pi-waiter");
    pi.waiter_tid = get_tid();
    while (!atomic_load(&pi_held))
        sleep_ms(1);
    unsigned long long t0 = mono_ns();
    int err = pthread_mutex_lock(&pi_mutex);
    pi.measured_ns = mono_ns() - t0;
    if (err) {
        set_errno_result(&pi, "pthread_mutex_lock", err);
        return NULL;
    }
    pthread_mutex_unlock(&pi_mutex);
    strcpy(pi.result, "ok");
    return NULL;
}

static void run_pi(void) {
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    int err = pthread_mutexattr_setprotocol(&attr, PTHREAD_PRIO_INHERIT);
    if (err)
        die("pthread_mutexattr_setprotocol", err);
    err = pthread_mutex_init(&pi_mutex, &attr);
    if (err)
        die("pthread_mutex_init", err);
    pthread_mutexattr_destroy(&attr);
    /* The futex word of a glibc mutex is its first field. */
    pi.addr = (uintptr_t)&pi_mutex;
    run_pair(pi_holder, pi_waiter, NULL);
}

/* ---- fwait2: futex_wait(2) / futex_wake(2) ----------------------------- */

static _Alignas(8) uint32_t f2_word;
static struct scenario fwait2 = {.name = "fwait2", .expected_ms = WAKE_AFTER_MS};

static void *f2_waiter(void *arg) {
    (void)arg;
    set_name("f2-waiter");
    fwait2.waiter_tid = get_tid();
    atomic_store(&waiter_ready, 1);
    unsigned long long t0 = mono_ns();
    long rc = 0;
    int err = 0;
    while (__atomic_load_n(&f2_word, __ATOMIC_SEQ_CST) == 0) {
        /* futex_wait(uaddr, val, mask, flags, timeout, clockid) */
        rc = syscall(SYS_futex_wait, &f2_word, 0UL, 0xffffffffUL,
                     (unsigned)(FUTEX2_SIZE_U32 | FUTEX2_PRIVATE), NULL, 0);
        err = errno;
        if (rc != 0 && err != EAGAIN && err != EINTR)
            break;
    }
    fwait2.measured_ns = mono_ns() - t0;
    if (rc != 0 && err != EAGAIN && err != EINTR) {
        set_errno_result(&fwait2, "futex_wait", err);
        /* Let the waker finish. */
        __atomic_store_n(&f2_word, 1, __ATOMIC_SEQ_CST);
        return NULL;
    }
    strcpy(fwait2.result, "ok");
    return NULL;
}

static void *f2_waker(void *arg) {
    (void)arg;
    set_name("f2-waker");
    fwait2.other_tid = get_tid();
    wait_for_waiter();
    sleep_ms(WAKE_AFTER_MS);
    __atomic_store_n(&f2_word, 1, __ATOMIC_SEQ_CST);
    /* futex_wake(uaddr, mask, nr, flags) */
    long rc = syscall(SYS_futex_wake, &f2_word, 0xffffffffUL, 1,
                      (unsigned)(FUTEX2_SIZE_U32 | FUTEX2_PRIVATE));
    if (rc < 0)
        fprintf(stderr, "c_futex_ops: futex_wake: %s\n", strerror(errno));
    return NULL;
}

static void run_fwait2(void) {
    fwait2.addr = (uintptr_t)&f2_word;
    atomic_store(&waiter_ready, 0);
    run_pair(f2_waiter, f2_waker, NULL);
}

/* ---- waitv: futex_waitv(2) on two words -------------------------------- */

static _Alignas(8) uint32_t wv_words[2][2]; /* [i][0]: the word; padding apart */
static struct scenario waitv = {.name = "waitv", .expected_ms = WAKE_AFTER_MS};
static uintptr_t wv_second;

static void *wv_waiter(void *arg) {
    (void)arg;
    set_name("wv-waiter");
    waitv.waiter_tid = get_tid();
    struct waitv_entry w[2];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 2; i++) {
        w[i].val = 0;
        w[i].uaddr = (uint64_t)(uintptr_t)&wv_words[i][0];
        w[i].flags = FUTEX2_SIZE_U32 | FUTEX2_PRIVATE;
    }
    atomic_store(&waiter_ready, 1);
    unsigned long long t0 = mono_ns();
    long rc = 0;
    int err = 0;
    while (__atomic_load_n(&wv_words[0][0], __ATOMIC_SEQ_CST) == 0) {
        /* futex_waitv(waiters, nr_futexes, flags, timeout, clockid) */
        rc = syscall(SYS_futex_waitv, w, 2U, 0U, NULL, 0);
        err = errno;
        if (rc < 0 && err != EAGAIN && err != EINTR)
            break;
    }
    waitv.measured_ns = mono_ns() - t0;
    if (rc < 0 && err != EAGAIN && err != EINTR) {
        set_errno_result(&waitv, "futex_waitv", err);
        __atomic_store_n(&wv_words[0][0], 1, __ATOMIC_SEQ_CST);
        return NULL;
    }
    strcpy(waitv.result, "ok");
    return NULL;
}

static void *wv_waker(void *arg) {
    (void)arg;
    set_name("wv-waker");
    waitv.other_tid = get_tid();
    wait_for_waiter();
    sleep_ms(WAKE_AFTER_MS);
    __atomic_store_n(&wv_words[0][0], 1, __ATOMIC_SEQ_CST);
    long rc = syscall(SYS_futex, &wv_words[0][0], FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    if (rc < 0)
        fprintf(stderr, "c_futex_ops: FUTEX_WAKE: %s\n", strerror(errno));
    return NULL;
}

static void run_waitv(void) {
    waitv.addr = (uintptr_t)&wv_words[0][0];
    wv_second = (uintptr_t)&wv_words[1][0];
    atomic_store(&waiter_ready, 0);
    run_pair(wv_waiter, wv_waker, NULL);
}

/* ---- timeout: FUTEX_WAIT_PRIVATE with a relative timeout --------------- */

static _Alignas(8) uint32_t to_word;
static struct scenario timeout = {.name = "timeout", .expected_ms = TIMEOUT_MS};

static void *to_waiter(void *arg) {
    (void)arg;
    set_name("to-waiter");
    timeout.waiter_tid = get_tid();
    struct timespec rel = {0, TIMEOUT_MS * 1000000L};
    unsigned long long t0 = mono_ns();
    long rc = syscall(SYS_futex, &to_word, FUTEX_WAIT_PRIVATE, 0, &rel, NULL, 0);
    int err = errno;
    timeout.measured_ns = mono_ns() - t0;
    if (rc == 0)
        strcpy(timeout.result, "woken without a waker");
    else if (err == ETIMEDOUT)
        strcpy(timeout.result, "ok");
    else
        set_errno_result(&timeout, "FUTEX_WAIT", err);
    return NULL;
}

static void run_timeout(void) {
    timeout.addr = (uintptr_t)&to_word;
    timeout.other_tid = 0;
    run_pair(to_waiter, NULL, NULL);
}

/* ---- signal: FUTEX_WAIT_PRIVATE interrupted by pthread_kill ------------ */

static _Alignas(8) uint32_t sig_word;
static struct scenario sig = {.name = "signal", .expected_ms = WAKE_AFTER_MS};
static pthread_t sig_waiter_thread;
static atomic_int sig_sent;
static atomic_int sig_done;

static void on_sigusr1(int signo) { (void)signo; }

static void *sig_waiter(void *arg) {
    (void)arg;
    set_name("sig-waiter");
    sig.waiter_tid = get_tid();
    atomic_store(&waiter_ready, 1);
    unsigned long long t0 = mono_ns();
    long rc = 0;
    int err = 0;
    int eintr = 0;
    /* Until the signal was sent (and seen as EINTR), the call fails, or the
     * sender gave up on the signal and changed the word. */
    while (!eintr && __atomic_load_n(&sig_word, __ATOMIC_SEQ_CST) == 0) {
        rc = syscall(SYS_futex, &sig_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
        err = errno;
        if (rc == 0 || err == EAGAIN)
            continue;
        if (err == EINTR) {
            if (atomic_load(&sig_sent))
                eintr = 1;
            continue;
        }
        break;
    }
    sig.measured_ns = mono_ns() - t0;
    if (!eintr) {
        if (rc != 0 && err != EAGAIN && err != EINTR)
            set_errno_result(&sig, "FUTEX_WAIT", err);
        else
            strcpy(sig.result, "not interrupted by the signal");
    } else {
        strcpy(sig.result, "ok");
    }
    atomic_store(&sig_done, 1);
    return NULL;
}

static void *sig_sender(void *arg) {
    (void)arg;
    set_name("sig-sender");
    sig.other_tid = get_tid();
    wait_for_waiter();
    sleep_ms(WAKE_AFTER_MS);
    atomic_store(&sig_sent, 1);
    int err = pthread_kill(sig_waiter_thread, SIGUSR1);
    if (err)
        die("pthread_kill", err);
    /* Had the signal landed between two futex calls, the waiter would block
     * again: after a second, release it through the word instead. */
    for (int i = 0; i < 1000 && !atomic_load(&sig_done); i++)
        sleep_ms(1);
    if (!atomic_load(&sig_done)) {
        __atomic_store_n(&sig_word, 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &sig_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    }
    return NULL;
}

static void run_signal(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* not SA_RESTART: the futex wait returns EINTR */
    if (sigaction(SIGUSR1, &sa, NULL) != 0)
        die("sigaction", errno);
    sig.addr = (uintptr_t)&sig_word;
    atomic_store(&waiter_ready, 0);
    pthread_t sender;
    int err = pthread_create(&sig_waiter_thread, NULL, sig_waiter, NULL);
    if (err)
        die("pthread_create", err);
    err = pthread_create(&sender, NULL, sig_sender, NULL);
    if (err)
        die("pthread_create", err);
    pthread_join(sender, NULL);
    pthread_join(sig_waiter_thread, NULL);
}

/* ---- main -------------------------------------------------------------- */

static void print_scenario(const struct scenario *s, int last) {
    printf("\"%s\":{\"addr\":\"0x%lx\",\"waiter_tid\":%d,\"other_tid\":%d,"
           "\"expected_ms\":%d,\"measured_ns\":%llu,\"result\":\"%s\"}%s",
           s->name, (unsigned long)s->addr, (int)s->waiter_tid, (int)s->other_tid,
           s->expected_ms, s->measured_ns, s->result, last ? "" : ",");
}

int main(void) {
    struct scenario *all[] = {&pi, &fwait2, &waitv, &timeout, &sig};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        strcpy(all[i]->result, "did not run");

    sleep_ms(WARMUP_MS);
    run_pi();
    sleep_ms(GAP_MS);
    run_fwait2();
    sleep_ms(GAP_MS);
    run_waitv();
    sleep_ms(GAP_MS);
    run_timeout();
    sleep_ms(GAP_MS);
    run_signal();

    printf("{\"workload\":\"c_futex_ops\",\"pid\":%d,\"main_tid\":%d,\"waitv_second_addr\":\"0x%lx\",",
           (int)getpid(), (int)get_tid(), (unsigned long)wv_second);
    size_t n = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n; i++)
        print_scenario(all[i], i + 1 == n);
    printf("}\n");
    fflush(stdout);
    return 0;
}
