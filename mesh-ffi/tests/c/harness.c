/* See harness.h. */
#define _POSIX_C_SOURCE 200809L

#include "harness.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

void expect_ok(mesh_status status, mesh_error *error, const char *what) {
    if (status != MESH_OK) {
        FAIL("%s: %s: %s", what, mesh_status_name(status),
             error ? mesh_error_message(error) : "(no error object)");
    }
    if (error != NULL) FAIL("%s: success left an error object", what);
}

void expect_error(mesh_status status, mesh_error *error, mesh_status want,
                  const char *needle, const char *what) {
    const char *message = error ? mesh_error_message(error) : "(no error object)";
    if (status != want) {
        FAIL("%s: expected %s, got %s: %s", what, mesh_status_name(want),
             mesh_status_name(status), message);
    }
    if (error == NULL) FAIL("%s: no error object", what);
    if (mesh_error_status(error) != want) FAIL("%s: error object has another status", what);
    if (needle != NULL && strstr(message, needle) == NULL) {
        FAIL("%s: message lacks \"%s\": %s", what, needle, message);
    }
    mesh_error_free(error);
}

int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

long read_until_eof(int fd, char *buf, size_t cap) {
    size_t got = 0;
    for (;;) {
        ssize_t n;
        if (got == cap) {
            char extra;
            n = read(fd, &extra, 1);
            if (n == 0) return (long)got;
            return n < 0 ? -errno : -E2BIG;
        }
        n = read(fd, buf + got, cap - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return (long)got;
        got += (size_t)n;
    }
}

int read_exact(int fd, void *buf, size_t len) {
    char *p = buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

uint64_t fnv1a(uint64_t hash, const void *data, size_t len) {
    const unsigned char *p = data;
    size_t i;
    for (i = 0; i < len; i++) {
        hash ^= p[i];
        hash *= 1099511628211ULL;
    }
    return hash;
}
