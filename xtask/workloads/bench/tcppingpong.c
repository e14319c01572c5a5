/* Two threads bounce one byte over a loopback TCP connection: the
 * `ping-pong` of sockets. One op is one round trip; each side blocks in
 * recv until the other's byte arrives, so every round trip is up to two
 * blocking socket waits (what spanlet records as socket_wait spanlets).
 * Both threads are pinned to one CPU, as in pingpong.
 * Usage: tcppingpong SECONDS WARMUP */
#include "bench.h" /* first: it defines _GNU_SOURCE */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int ends[2];

static void die_errno(const char *what) {
    perror(what);
    exit(1);
}

static void bounce_one(int fd) {
    char byte = 0;
    if (recv(fd, &byte, 1, MSG_WAITALL) != 1) die_errno("tcppingpong: recv");
    if (send(fd, &byte, 1, 0) != 1) die_errno("tcppingpong: send");
}

static void *pong(void *arg) {
    (void)arg;
    bench_pin(0);
    while (!bench_stopped()) bounce_one(ends[1]);
    return NULL;
}

/* Round trips until `until_ns`, checking the clock every 64 of them. */
static unsigned long long rounds_until(unsigned long long until_ns) {
    unsigned long long rounds = 0;
    char byte = 1;
    do {
        for (int i = 0; i < 64; i++) {
            if (send(ends[0], &byte, 1, 0) != 1) die_errno("tcppingpong: send");
            if (recv(ends[0], &byte, 1, MSG_WAITALL) != 1) die_errno("tcppingpong: recv");
        }
        rounds += 64;
    } while (bench_now_ns() < until_ns);
    return rounds;
}

/* A connected loopback TCP pair, Nagle off. */
static void connect_pair(void) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (listener < 0 || bind(listener, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(listener, 1) != 0 || getsockname(listener, (struct sockaddr *)&a, &len) != 0)
        die_errno("tcppingpong: listen");
    ends[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (ends[0] < 0 || connect(ends[0], (struct sockaddr *)&a, sizeof a) != 0)
        die_errno("tcppingpong: connect");
    ends[1] = accept(listener, NULL, NULL);
    if (ends[1] < 0) die_errno("tcppingpong: accept");
    int one = 1;
    for (int i = 0; i < 2; i++) setsockopt(ends[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    close(listener);
}

int main(int argc, char **argv) {
    unsigned long long seconds, warmup;
    bench_args(argc, argv, "", &seconds, &warmup);
    connect_pair();
    bench_pin(0);
    pthread_t t;
    if (pthread_create(&t, NULL, pong, NULL) != 0) return 1;
    rounds_until(bench_now_ns() + warmup);
    bench_start("tcppingpong");
    unsigned long long t0 = bench_now_ns();
    unsigned long long rounds = rounds_until(t0 + seconds);
    unsigned long long elapsed = bench_now_ns() - t0;
    atomic_store(&bench_stop, 1);
    /* One more byte lets pong see the stop. */
    char byte = 2;
    if (send(ends[0], &byte, 1, 0) != 1) die_errno("tcppingpong: send");
    pthread_join(t, NULL);
    bench_result("tcppingpong", rounds, elapsed, "");
    return 0;
}
