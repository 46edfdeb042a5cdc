/*
 * Tunnel throughput and 64-byte echo latency through the C ABI (the socketpair path), the
 * counterpart of examples/bench_native.rs. Both workloads run in this process over loopback,
 * created through the ABI and sharing a development CA in DIR. Run by scripts/bench.sh.
 *
 * usage: tunnel DIR MIB PINGS
 * prints: ffi throughput_mib_s=.. echo64_p50_us=.. echo64_p99_us=..
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mesh.h"

#define CHUNK 65536

static void die(const char *what, mesh_status status, mesh_error *error) {
    fprintf(stderr, "%s: %s: %s\n", what, mesh_status_name(status),
            error ? mesh_error_message(error) : "");
    exit(1);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int send_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int recv_all(int fd, void *data, size_t len) {
    char *p = data;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Port 9000 echoes; 9001 counts bytes until EOF and answers with the count. */
static void *serve(void *arg) {
    mesh_tunnel *tunnel = arg;
    int fd = mesh_tunnel_fd(tunnel);
    char *buf = malloc(CHUNK);
    uint64_t total = 0;
    ssize_t n;
    int echo = mesh_tunnel_target_port(tunnel) == 9000;
    while (buf != NULL && (n = read(fd, buf, CHUNK)) > 0) {
        total += (uint64_t)n;
        if (echo && send_all(fd, buf, (size_t)n) != 0) break;
    }
    if (!echo) send_all(fd, &total, sizeof total);
    free(buf);
    mesh_tunnel_free(tunnel);
    return NULL;
}

static void *accept_loop(void *arg) {
    for (;;) {
        mesh_tunnel *tunnel = NULL;
        pthread_t thread;
        if (mesh_server_accept(arg, 0, &tunnel, NULL) != MESH_OK) return NULL;
        pthread_create(&thread, NULL, serve, tunnel);
        pthread_detach(thread);
    }
}

static mesh_tunnel *open_tunnel(const mesh_mesh *client, const char *target) {
    mesh_tunnel *tunnel = NULL;
    mesh_error *error = NULL;
    mesh_status status = mesh_tunnel_connect(client, target, 10000, &tunnel, &error);
    if (status != MESH_OK) die(target, status, error);
    return tunnel;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    char config[2048];
    mesh_mesh *server_mesh = NULL, *client = NULL;
    mesh_server *server = NULL;
    mesh_error *error = NULL;
    mesh_status status;
    pthread_t acceptor;
    mesh_tunnel *sink, *echo;
    static char chunk[CHUNK];
    uint64_t count = 0, bytes;
    double started, seconds, *samples;
    size_t i, pings, warmup;
    char ping[64], pong[64];

    if (argc != 4) {
        fprintf(stderr, "usage: %s DIR MIB PINGS\n", argv[0]);
        return 2;
    }
    bytes = (uint64_t)strtoull(argv[2], NULL, 10) << 20;
    pings = (size_t)strtoull(argv[3], NULL, 10);
    warmup = pings / 10;

    snprintf(config, sizeof config,
             "identity: { spiffe_id: spiffe://cluster.local/ns/bench/sa/server, dev_ca: { dir: %s/ca } }\n"
             "inbound: { listen: \"127.0.0.1:0\" }\n",
             argv[1]);
    if ((status = mesh_mesh_new(config, 30000, &server_mesh, &error)) != MESH_OK) die("server", status, error);
    if ((status = mesh_server_start(server_mesh, NULL, NULL, &server, &error)) != MESH_OK) die("start", status, error);
    pthread_create(&acceptor, NULL, accept_loop, server);
    snprintf(config, sizeof config,
             "identity: { spiffe_id: spiffe://cluster.local/ns/bench/sa/client, dev_ca: { dir: %s/ca } }\n"
             "services:\n  - host: bench.svc\n    ports: [{ port: 9000 }, { port: 9001 }]\n"
             "    identities: [spiffe://cluster.local/ns/bench/sa/server]\n"
             "    endpoints: [{ address: \"127.0.0.1:9000\", hbone_port: %u }]\n",
             argv[1], mesh_server_port(server));
    if ((status = mesh_mesh_new(config, 30000, &client, &error)) != MESH_OK) die("client", status, error);

    sink = open_tunnel(client, "bench.svc:9001");
    memset(chunk, 7, sizeof chunk);
    started = now_us();
    for (i = 0; i < bytes / CHUNK; i++) {
        if (send_all(mesh_tunnel_fd(sink), chunk, sizeof chunk) != 0) die("send", MESH_ERR_IO, NULL);
    }
    shutdown(mesh_tunnel_fd(sink), SHUT_WR);
    if (recv_all(mesh_tunnel_fd(sink), &count, sizeof count) != 0 || count != bytes) {
        die("sink count", MESH_ERR_IO, NULL);
    }
    seconds = (now_us() - started) / 1e6;

    echo = open_tunnel(client, "bench.svc:9000");
    samples = malloc(pings * sizeof *samples);
    memset(ping, 1, sizeof ping);
    for (i = 0; i < pings + warmup; i++) {
        double t = now_us();
        if (send_all(mesh_tunnel_fd(echo), ping, sizeof ping) != 0 ||
            recv_all(mesh_tunnel_fd(echo), pong, sizeof pong) != 0) {
            die("echo", MESH_ERR_IO, NULL);
        }
        if (i >= warmup) samples[i - warmup] = now_us() - t;
    }
    qsort(samples, pings, sizeof *samples, by_value);
    printf("ffi throughput_mib_s=%.1f echo64_p50_us=%.1f echo64_p99_us=%.1f\n",
           (double)(bytes >> 20) / seconds, samples[pings / 2], samples[pings * 99 / 100]);
    free(samples);
    mesh_tunnel_free(sink);
    mesh_tunnel_free(echo);
    mesh_server_shutdown(server, 5000, NULL, NULL);
    pthread_join(acceptor, NULL);
    mesh_server_free(server);
    mesh_mesh_free(client);
    mesh_mesh_free(server_mesh);
    return 0;
}
