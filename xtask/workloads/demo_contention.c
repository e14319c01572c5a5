/*
 * demo_contention: a small "bank" whose accounts sit behind one global
 * pthread mutex, so its threads contend on it. Used by `cargo xtask demo`.
 *
 *   - 4 "teller-N" threads transfer money between random accounts; each
 *     transfer holds the lock for ~2 ms of (simulated) bookkeeping.
 *   - 1 "auditor" thread takes the lock every 300 ms and holds it for 50 ms
 *     while it sums all balances, stalling every teller.
 *
 * Runs for argv[1] seconds (default 2), then prints its totals on stdout.
 * Build: gcc -O1 -g -fno-omit-frame-pointer -pthread -o demo_contention demo_contention.c
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ACCOUNTS 64
#define TELLERS 4
#define TRANSFER_HOLD_NS (2 * 1000 * 1000L)
#define AUDIT_HOLD_NS (50 * 1000 * 1000L)
#define AUDIT_PERIOD_NS (300 * 1000 * 1000L)
#define INITIAL_BALANCE 1000

static pthread_mutex_t bank_lock = PTHREAD_MUTEX_INITIALIZER;
static long balances[ACCOUNTS];
static volatile int stop;
static long transfers[TELLERS];
static long audits;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* On-CPU work while holding the lock, so the holder stays runnable. */
static __attribute__((noinline)) void busy_for(int64_t ns)
{
	int64_t end = now_ns() + ns;
	while (now_ns() < end)
		;
}

static void sleep_ns(long ns)
{
	struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
	nanosleep(&ts, NULL);
}

static __attribute__((noinline)) void transfer(int from, int to, long amount)
{
	pthread_mutex_lock(&bank_lock);
	if (balances[from] >= amount) {
		balances[from] -= amount;
		balances[to] += amount;
	}
	busy_for(TRANSFER_HOLD_NS); /* ledger bookkeeping */
	pthread_mutex_unlock(&bank_lock);
}

static __attribute__((noinline)) long audit(void)
{
	long total = 0;
	pthread_mutex_lock(&bank_lock);
	for (int i = 0; i < ACCOUNTS; i++)
		total += balances[i];
	busy_for(AUDIT_HOLD_NS); /* a slow consistency check */
	pthread_mutex_unlock(&bank_lock);
	return total;
}

static void *teller(void *arg)
{
	int id = (int)(intptr_t)arg;
	char name[16];
	unsigned seed = 12345u + (unsigned)id;

	snprintf(name, sizeof(name), "teller-%d", id);
	pthread_setname_np(pthread_self(), name);
	while (!stop) {
		int from = rand_r(&seed) % ACCOUNTS;
		int to = rand_r(&seed) % ACCOUNTS;
		transfer(from, to, 1 + rand_r(&seed) % 50);
		transfers[id]++;
		sleep_ns(200 * 1000L); /* think time between customers */
	}
	return NULL;
}

static void *auditor(void *arg)
{
	long expected = (long)ACCOUNTS * INITIAL_BALANCE;

	(void)arg;
	pthread_setname_np(pthread_self(), "auditor");
	while (!stop) {
		sleep_ns(AUDIT_PERIOD_NS);
		if (stop)
			break;
		if (audit() != expected)
			fprintf(stderr, "auditor: books do not balance!\n");
		audits++;
	}
	return NULL;
}

int main(int argc, char **argv)
{
	double seconds = argc > 1 ? atof(argv[1]) : 2.0;
	pthread_t tellers[TELLERS], aud;
	long total = 0;

	if (seconds <= 0)
		seconds = 2.0;
	for (int i = 0; i < ACCOUNTS; i++)
		balances[i] = INITIAL_BALANCE;

	for (int i = 0; i < TELLERS; i++)
		if (pthread_create(&tellers[i], NULL, teller, (void *)(intptr_t)i) != 0) {
			perror("pthread_create");
			return 1;
		}
	if (pthread_create(&aud, NULL, auditor, NULL) != 0) {
		perror("pthread_create");
		return 1;
	}

	sleep_ns((long)(seconds * 1e9));
	stop = 1;
	for (int i = 0; i < TELLERS; i++)
		pthread_join(tellers[i], NULL);
	pthread_join(aud, NULL);

	for (int i = 0; i < TELLERS; i++)
		total += transfers[i];
	printf("demo_contention: %ld transfers by %d tellers, %ld audits in %.1f s\n",
	       total, TELLERS, audits, seconds);
	return 0;
}
