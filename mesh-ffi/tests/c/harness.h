/*
 * Small helpers for the C scenario tests: checks that name what failed, socket I/O that
 * never raises SIGPIPE, and a checksum.
 */
#ifndef MESH_TEST_HARNESS_H
#define MESH_TEST_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mesh.h"

#define FAIL(...)                                                     \
    do {                                                              \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);          \
        fprintf(stderr, __VA_ARGS__);                                 \
        fprintf(stderr, "\n");                                        \
        exit(1);                                                      \
    } while (0)

#define CHECK(cond)                                                   \
    do {                                                              \
        if (!(cond)) FAIL("check failed: %s", #cond);                 \
    } while (0)

/*
 * Call-then-check wrappers: C leaves the order of argument evaluation open, so the error
 * variable must be read only after the call that sets it.
 */
#define EXPECT_OK(call, err, what)                                    \
    do {                                                              \
        mesh_status status_ = (call);                                 \
        expect_ok(status_, err, what);                                \
        err = NULL;                                                   \
    } while (0)
#define EXPECT_ERROR(call, err, want, needle, what)                   \
    do {                                                              \
        mesh_status status_ = (call);                                 \
        expect_error(status_, err, want, needle, what);               \
        err = NULL;                                                   \
    } while (0)

/* Fails with the error's message unless `status` is MESH_OK; frees the error. */
void expect_ok(mesh_status status, mesh_error *error, const char *what);

/* Checks the status and that the message contains `needle` (NULL: anything); frees it. */
void expect_error(mesh_status status, mesh_error *error, mesh_status want,
                  const char *needle, const char *what);

/* Writes all of `len` bytes (MSG_NOSIGNAL); returns 0 or -errno. */
int write_all(int fd, const void *data, size_t len);

/* Reads until EOF or `cap` bytes; returns the count, or -errno on error. */
long read_until_eof(int fd, char *buf, size_t cap);

/* Reads exactly `len` bytes; returns 0, or -1 on EOF/error. */
int read_exact(int fd, void *buf, size_t len);

/* FNV-1a over a stream, continuing from `hash` (start with FNV_START). */
#define FNV_START 1469598103934665603ULL
uint64_t fnv1a(uint64_t hash, const void *data, size_t len);

#endif
