/*
 * The floor under any socket handed to a host thread: 64 bytes ping-ponged between two threads
 * of this process over a Unix socketpair, nothing else. Each round trip wakes a thread blocked
 * in read() twice, as the ABI's socketpair bridge must (host thread -> library worker -> host
 * thread). scripts/bench.sh prints it beside the tunnel echo so that the ABI's extra latency
 * reads as a number of these hand-offs, which depend on the machine (a virtual CPU that halts
 * when idle makes each wake-up cost tens of microseconds).
 *
 * usage: handoff ROUNDS
 * prints: floor socketpair_rtt_p50_us=.. socketpair_rtt_p99_us=..
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int fds[2];

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int exchange(int fd, char *buf, size_t len, int write_first) {
    size_t done;
    ssize_t n;
    if (write_first && write(fd, buf, len) != (ssize_t)len) return -1;
    for (done = 0; done < len; done += (size_t)n) {
        if ((n = read(fd, buf + done, len - done)) <= 0) return -1;
    }
    if (!write_first && write(fd, buf, len) != (ssize_t)len) return -1;
    return 0;
}

static void *echo(void *arg) {
    char buf[64];
    (void)arg;
    while (exchange(fds[1], buf, sizeof buf, 0) == 0) {
    }
    return NULL;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t i, rounds, warmup;
    double *samples;
    char buf[64] = {0};
    pthread_t thread;

    if (argc != 2 || (rounds = (size_t)strtoull(argv[1], NULL, 10)) == 0) {
        fprintf(stderr, "usage: %s ROUNDS\n", argv[0]);
        return 2;
    }
    warmup = rounds / 10;
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0 || pthread_create(&thread, NULL, echo, NULL) != 0) {
        perror("setup");
        return 1;
    }
    samples = malloc(rounds * sizeof *samples);
    if (samples == NULL) return 1;
    for (i = 0; i < rounds + warmup; i++) {
        double t = now_us();
        if (exchange(fds[0], buf, sizeof buf, 1) != 0) {
            perror("ping");
            return 1;
        }
        if (i >= warmup) samples[i - warmup] = now_us() - t;
    }
    shutdown(fds[0], SHUT_RDWR);
    pthread_join(thread, NULL);
    qsort(samples, rounds, sizeof *samples, by_value);
    printf("floor socketpair_rtt_p50_us=%.1f socketpair_rtt_p99_us=%.1f\n", samples[rounds / 2],
           samples[rounds * 99 / 100]);
    free(samples);
    return 0;
}
