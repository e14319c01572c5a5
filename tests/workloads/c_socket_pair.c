/* A client/server pair on loopback TCP, two processes.
 *
 * Server (this process): two threads share one listening socket. S1 blocks
 * in accept first, S2 30 ms later, behind it. S1 gets the client's
 * connection and serves it: for each 1-byte request it sleeps DELAY_MS,
 * then sends a 1-byte reply. S2 waits in accept until the client's second,
 * empty connection at the end.
 *
 * Client (a forked child): two threads share one connection. Each round,
 * C1 sends a request and blocks in recv; 20 ms later C2 does the same, so
 * both wait on the same socket, C2 behind C1, and the second reply comes
 * DELAY_MS after the first. Rounds after the first start with a 50 ms
 * pause, in which S1 waits in recv for the next request.
 *
 * With "epoll", "poll" or "select" as third argument, S1 waits for each
 * request in epoll_wait (level-triggered, one fd), poll or select on its
 * connection before reading it.
 *
 * Usage: c_socket_pair [ROUNDS] [DELAY_MS] [epoll|poll|select]
 * Prints one JSON line of ground truth at the end. */
#define WORKLOAD_NAME "c_socket_pair"
#include "workload.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/wait.h>

static int rounds = 2;
/* How S1 waits for a request before reading it: "", "epoll", "poll", "select". */
static const char *wait_mode = "";
static long delay_ms = 100;
static int listener;
static unsigned short port;
static pid_t s_tids[2];
static int conn;
static pthread_barrier_t round_start;

static void *server(void *arg) {
    int me = (int)(long)arg;
    s_tids[me] = get_tid();
    int c = accept(listener, NULL, NULL);
    if (c < 0) die("accept", errno);
    int ep = -1;
    int use_epoll = strcmp(wait_mode, "epoll") == 0;
    if (use_epoll) {
        ep = epoll_create1(0);
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
        if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev) != 0) die("epoll", errno);
    }
    char byte;
    ssize_t n;
    for (;;) {
        if (use_epoll) {
            struct epoll_event ready;
            if (epoll_wait(ep, &ready, 1, -1) != 1) die("epoll_wait", errno);
        } else if (strcmp(wait_mode, "poll") == 0) {
            struct pollfd p = {.fd = c, .events = POLLIN};
            if (poll(&p, 1, -1) != 1) die("poll", errno);
        } else if (strcmp(wait_mode, "select") == 0) {
            fd_set r;
            FD_ZERO(&r);
            FD_SET(c, &r);
            if (select(c + 1, &r, NULL, NULL, NULL) != 1) die("select", errno);
        }
        if ((n = recv(c, &byte, 1, 0)) != 1) break;
        sleep_ms(delay_ms);
        if (send(c, &byte, 1, 0) != 1) die("send reply", errno);
    }
    if (n < 0) die("recv request", errno);
    if (ep >= 0) close(ep);
    close(c);
    return NULL;
}

static pid_t c_tids[2];

static void *client(void *arg) {
    int me = (int)(long)arg;
    c_tids[me] = get_tid();
    for (int r = 0; r < rounds; r++) {
        pthread_barrier_wait(&round_start);
        /* After the first round, a pause: the server waits for requests. */
        sleep_ms((r > 0 ? 50 : 0) + (me == 1 ? 20 : 0));
        char byte = (char)('a' + me);
        if (send(conn, &byte, 1, 0) != 1) die("send request", errno);
        if (recv(conn, &byte, 1, MSG_WAITALL) != 1) die("recv reply", errno);
        pthread_barrier_wait(&round_start);
    }
    return NULL;
}

static int connect_to_server(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket", errno);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) die("connect", errno);
    return s;
}

/* The child: runs the client once told to, reports its tids on `out`. */
static void run_client(int go, int out) {
    char token;
    if (read(go, &token, 1) != 1) die("waiting for the server", errno);
    conn = connect_to_server();
    pthread_barrier_init(&round_start, NULL, 2);
    pthread_t t[2];
    for (long i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, client, (void *)i) != 0) die("pthread_create", EAGAIN);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    close(conn);
    /* Releases S2 from accept. */
    close(connect_to_server());
    pid_t info[3] = {getpid(), c_tids[0], c_tids[1]};
    if (write(out, info, sizeof info) != sizeof info) die("reporting tids", errno);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc > 1) rounds = atoi(argv[1]);
    if (argc > 2) delay_ms = atol(argv[2]);
    if (argc > 3) wait_mode = argv[3];
    if (rounds < 1 || delay_ms < 1) {
        fprintf(stderr, "usage: %s [ROUNDS] [DELAY_MS] [epoll|poll|select]\n", WORKLOAD_NAME);
        return 2;
    }
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) die("socket", errno);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0) die("bind", errno);
    if (listen(listener, 8) != 0) die("listen", errno);
    if (getsockname(listener, (struct sockaddr *)&a, &len) != 0) die("getsockname", errno);
    port = ntohs(a.sin_port);

    int go[2], back[2];
    if (pipe(go) != 0 || pipe(back) != 0) die("pipe", errno);
    pid_t child = fork();
    if (child < 0) die("fork", errno);
    if (child == 0) run_client(go[0], back[1]);

    unsigned long long start = now_unix_ns();
    pthread_t t[2];
    for (long i = 0; i < 2; i++) {
        if (pthread_create(&t[i], NULL, server, (void *)i) != 0) die("pthread_create", EAGAIN);
        sleep_ms(30);
    }
    sleep_ms(30);
    if (write(go[1], "g", 1) != 1) die("starting the client", errno);
    pid_t info[3];
    if (read(back[0], info, sizeof info) != sizeof info) die("reading client tids", errno);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "%s: the client failed\n", WORKLOAD_NAME);
        return 1;
    }
    printf("{\"workload\":\"%s\",\"wait\":\"%s\",\"port\":%u,\"rounds\":%d,\"delay_ms\":%ld,"
           "\"server_pid\":%d,\"server_tids\":[%d,%d],"
           "\"client_pid\":%d,\"client_tids\":[%d,%d],"
           "\"start_unix_nano\":%llu,\"end_unix_nano\":%llu}\n",
           WORKLOAD_NAME, wait_mode, port, rounds, delay_ms, getpid(), s_tids[0], s_tids[1], info[0], info[1],
           info[2], start, now_unix_ns());
    return 0;
}
