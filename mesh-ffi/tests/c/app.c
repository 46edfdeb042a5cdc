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

/* Buffered reads for the streaming HTTP responder. */
struct reader {
    int fd;
    size_t start, end;
    char buf[65536];
};

static int reader_fill(struct reader *r) {
    ssize_t n;
    if (r->start < r->end) return 0;
    n = read(r->fd, r->buf, sizeof r->buf);
    if (n <= 0) return -1;
    r->start = 0;
    r->end = (size_t)n;
    return 0;
}

/* A line without its CRLF, cut to `cap` - 1 bytes; -1 on EOF. */
static int reader_line(struct reader *r, char *line, size_t cap) {
    size_t n = 0;
    for (;;) {
        char c;
        if (reader_fill(r) != 0) return -1;
        c = r->buf[r->start++];
        if (c == '\n') break;
        if (c != '\r' && n + 1 < cap) line[n++] = c;
    }
    line[n] = '\0';
    return 0;
}

/* Hashes `len` body bytes; -1 on EOF. */
static int reader_hash(struct reader *r, unsigned long len, uint64_t *hash,
                       unsigned long *total) {
    while (len > 0) {
        size_t n;
        if (reader_fill(r) != 0) return -1;
        n = r->end - r->start;
        if (n > len) n = len;
        *hash = fnv1a(*hash, r->buf + r->start, n);
        *total += n;
        r->start += n;
        len -= n;
    }
    return 0;
}

static int starts_with_nocase(const char *s, const char *prefix) {
    for (; *prefix; s++, prefix++) {
        char c = *s;
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != *prefix) return 0;
    }
    return 1;
}

/*
 * 9006: reads a request whose body may be chunked or have a content-length, hashing it, then
 * answers x-body-bytes / x-body-fnv and a body of `x-size` bytes where byte i is i % 251.
 */
static void http_stream(int fd) {
    struct reader r;
    char line[1024], head[512], out[65536];
    long content_length = -1;
    int chunked = 0;
    unsigned long size = 0, total = 0, sent = 0;
    uint64_t hash = FNV_START;
    int n;
    r.fd = fd;
    r.start = r.end = 0;
    if (reader_line(&r, line, sizeof line) != 0) return;
    for (;;) {
        if (reader_line(&r, line, sizeof line) != 0) return;
        if (line[0] == '\0') break;
        if (starts_with_nocase(line, "content-length:")) content_length = strtol(line + 15, NULL, 10);
        if (starts_with_nocase(line, "transfer-encoding:") && strstr(line, "chunked")) chunked = 1;
        if (starts_with_nocase(line, "x-size:")) size = strtoul(line + 7, NULL, 10);
    }
    if (chunked) {
        for (;;) {
            unsigned long chunk;
            if (reader_line(&r, line, sizeof line) != 0) return;
            chunk = strtoul(line, NULL, 16);
            if (chunk == 0) break;
            if (reader_hash(&r, chunk, &hash, &total) != 0) return;
            if (reader_line(&r, line, sizeof line) != 0) return;
        }
        do { /* trailers, then the blank line */
            if (reader_line(&r, line, sizeof line) != 0) return;
        } while (line[0] != '\0');
    } else if (content_length > 0) {
        if (reader_hash(&r, (unsigned long)content_length, &hash, &total) != 0) return;
    }
    n = snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\ncontent-length: %lu\r\nx-body-bytes: %lu\r\n"
                 "x-body-fnv: %016llx\r\nconnection: close\r\n\r\n",
                 size, total, (unsigned long long)hash);
    if (write_all(fd, head, (size_t)n) != 0) return;
    while (sent < size) {
        size_t i, piece = size - sent < sizeof out ? (size_t)(size - sent) : sizeof out;
        for (i = 0; i < piece; i++) out[i] = (char)((sent + i) % 251);
        if (write_all(fd, out, piece) != 0) return;
        sent += piece;
    }
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
    case 9006:
        http_stream(fd);
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
