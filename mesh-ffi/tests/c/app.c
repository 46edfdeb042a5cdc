/* See app.h. */
#define _POSIX_C_SOURCE 200809L

#include "app.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"

#define MAX_HANDLERS 1024

static pthread_t accept_thread;
static pthread_t handlers[MAX_HANDLERS];
static int handler_count;
static int drain_reset = -1;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void echo(int fd) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        if (write_all(fd, buf, (size_t)n) != 0) break;
    }
    shutdown(fd, SHUT_WR);
}

static void http(int fd, const char *peer) {
    char request[8192];
    size_t got = 0;
    char *end = NULL;
    long length = 0;
    char method[16] = "", path[256] = "";
    char response[9000];
    const char *body;
    char *cl;
    int n;
    while (end == NULL && got < sizeof request - 1) {
        ssize_t r = read(fd, request + got, sizeof request - 1 - got);
        if (r <= 0) return;
        got += (size_t)r;
        request[got] = '\0';
        end = strstr(request, "\r\n\r\n");
    }
    if (end == NULL) return;
    cl = strstr(request, "content-length: ");
    if (cl == NULL) cl = strstr(request, "Content-Length: ");
    if (cl != NULL && cl < end) length = strtol(cl + 16, NULL, 10);
    body = end + 4;
    while ((long)(got - (size_t)(body - request)) < length && got < sizeof request - 1) {
        ssize_t r = read(fd, request + got, sizeof request - 1 - got);
        if (r <= 0) return;
        got += (size_t)r;
        request[got] = '\0';
    }
    if (sscanf(request, "%15s %255s", method, path) != 2) return;
    n = snprintf(response, sizeof response,
                 "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-peer: %s\r\n"
                 "content-length: %ld\r\nconnection: close\r\n\r\n%s %s %.*s",
                 peer, (long)(strlen(method) + 1 + strlen(path) + 1 + (size_t)length), method,
                 path, (int)length, body);
    write_all(fd, response, (size_t)n);
}

static void *handle(void *arg) {
    mesh_tunnel *tunnel = arg;
    int fd = mesh_tunnel_fd(tunnel);
    char buf[256];
    long n;
    CHECK(fd >= 0);
    switch (mesh_tunnel_target_port(tunnel)) {
    case 9000:
        echo(fd);
        break;
    case 9001:
        http(fd, mesh_tunnel_peer_id(tunnel));
        break;
    case 9002:
        CHECK(read(fd, buf, 1) == 1);
        break; /* the rest stays unread: closing now resets the tunnel */
    case 9003:
        CHECK(write_all(fd, "ready\n", 6) == 0);
        n = read_until_eof(fd, buf, sizeof buf);
        CHECK(n == 0);
        pthread_mutex_lock(&lock);
        drain_reset = mesh_tunnel_get_state(tunnel) == MESH_TUNNEL_RESET;
        pthread_mutex_unlock(&lock);
        break;
    case 9004:
        write_all(fd, mesh_tunnel_peer_id(tunnel), strlen(mesh_tunnel_peer_id(tunnel)));
        break;
    case 9005: {
        char chunk[65536];
        unsigned long total = 0;
        ssize_t r;
        while ((r = read(fd, chunk, sizeof chunk)) > 0) total += (unsigned long)r;
        n = snprintf(buf, sizeof buf, "got %lu bytes", total);
        write_all(fd, buf, (size_t)n);
        break;
    }
    default:
        FAIL("tunnel to unexpected port %u", mesh_tunnel_target_port(tunnel));
    }
    mesh_tunnel_free(tunnel); /* closes fd */
    return NULL;
}

static void *accept_loop(void *arg) {
    const mesh_server *server = arg;
    for (;;) {
        mesh_tunnel *tunnel = NULL;
        mesh_error *error = NULL;
        mesh_status status = mesh_server_accept(server, 0, &tunnel, &error);
        if (status == MESH_ERR_CLOSED) {
            CHECK(tunnel == NULL);
            mesh_error_free(error);
            return NULL;
        }
        EXPECT_OK(status, error, "mesh_server_accept");
        CHECK(strncmp(mesh_tunnel_peer_addr(tunnel), "127.0.0.1:", 10) == 0);
        pthread_mutex_lock(&lock);
        if (handler_count == MAX_HANDLERS) FAIL("too many tunnels");
        if (pthread_create(&handlers[handler_count], NULL, handle, tunnel) != 0) {
            FAIL("pthread_create");
        }
        handler_count++;
        pthread_mutex_unlock(&lock);
    }
}

void app_start(const mesh_server *server) {
    if (pthread_create(&accept_thread, NULL, accept_loop, (void *)server) != 0) {
        FAIL("pthread_create");
    }
}

void app_join(void) {
    int i, count;
    pthread_join(accept_thread, NULL);
    pthread_mutex_lock(&lock);
    count = handler_count;
    pthread_mutex_unlock(&lock);
    for (i = 0; i < count; i++) pthread_join(handlers[i], NULL);
}

int app_handled(void) {
    int n;
    pthread_mutex_lock(&lock);
    n = handler_count;
    pthread_mutex_unlock(&lock);
    return n;
}

int app_drain_tunnel_was_reset(void) {
    int r;
    pthread_mutex_lock(&lock);
    r = drain_reset;
    pthread_mutex_unlock(&lock);
    return r;
}
