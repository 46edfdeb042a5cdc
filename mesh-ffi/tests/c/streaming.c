/*
 * Streamed HTTP bodies: a request body written in chunks (mesh_upload_*) and response bodies
 * read in chunks (mesh_response_read), against the streaming responder on port 9006, which
 * hashes what it received and answers a generated body of the size asked for.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>

#include "harness.h"

void scenario_streaming(const mesh_mesh *client);
extern int passed;

#define URL "http://inventory.shop.svc.cluster.local:9006/upload"
#define STEP_MS 20000

static const char *header(const mesh_response *response, const char *name) {
    size_t i;
    for (i = 0; i < mesh_response_header_count(response); i++) {
        if (strcmp(mesh_response_header_name(response, i), name) == 0) {
            return mesh_response_header_value(response, i);
        }
    }
    FAIL("no %s header", name);
    return NULL;
}

/* Reads the whole body in pieces of `piece` bytes, checking byte i == i % 251. */
static unsigned long read_generated(const mesh_response *response, size_t piece) {
    unsigned char *buf = malloc(piece);
    unsigned long total = 0;
    mesh_error *error = NULL;
    CHECK(buf != NULL);
    for (;;) {
        size_t n = 7, i;
        EXPECT_OK(mesh_response_read(response, buf, piece, STEP_MS, &n, &error), error, "read");
        if (n == 0) break;
        CHECK(n <= piece);
        for (i = 0; i < n; i++) {
            if (buf[i] != (unsigned char)((total + i) % 251)) FAIL("byte %lu", total + i);
        }
        total += n;
    }
    {
        size_t n = 7; /* the end stays the end */
        EXPECT_OK(mesh_response_read(response, buf, piece, STEP_MS, &n, &error), error, "reread");
        CHECK(n == 0);
    }
    free(buf);
    return total;
}

static mesh_request *request(const char *method, const char *size) {
    mesh_request *req = NULL;
    mesh_error *error = NULL;
    EXPECT_OK(mesh_request_new(method, URL, &req, &error), error, "request_new");
    EXPECT_OK(mesh_request_add_header(req, "x-size", size, &error), error, "x-size");
    return req;
}

/* Uploads `total` bytes in chunks of `chunk` (a pattern), optionally with a content-length. */
static void upload(const mesh_mesh *client, unsigned long total, size_t chunk, int sized) {
    mesh_request *req = request("PUT", "3000000");
    mesh_upload *up = NULL;
    mesh_response *response = NULL;
    mesh_error *error = NULL;
    unsigned char *buf = malloc(chunk);
    unsigned long sent = 0;
    uint64_t hash = FNV_START;
    char want[64];
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK(buf != NULL);
    if (sized) {
        snprintf(want, sizeof want, "%lu", total);
        EXPECT_OK(mesh_request_add_header(req, "content-length", want, &error), error, "cl");
    }
    EXPECT_OK(mesh_upload_start(req, client, STEP_MS, &up, &error), error, "upload_start");
    CHECK(up != NULL);
    while (sent < total) {
        size_t n = total - sent < chunk ? (size_t)(total - sent) : chunk, i;
        for (i = 0; i < n; i++) buf[i] = (unsigned char)((sent + i) * 7 % 256);
        hash = fnv1a(hash, buf, n);
        EXPECT_OK(mesh_upload_write(up, buf, n, STEP_MS, &error), error, "upload_write");
        sent += n;
    }
    EXPECT_OK(mesh_upload_finish(up, STEP_MS, &response, &error), error, "upload_finish");
    CHECK(mesh_response_status(response) == 200);
    snprintf(want, sizeof want, "%lu", total);
    if (strcmp(header(response, "x-body-bytes"), want) != 0) {
        FAIL("server got %s bytes, want %s", header(response, "x-body-bytes"), want);
    }
    snprintf(want, sizeof want, "%016llx", (unsigned long long)hash);
    CHECK(strcmp(header(response, "x-body-fnv"), want) == 0);
    /* A streamed response has no whole body. */
    EXPECT_ERROR(mesh_response_body(response, &data, &len, &error), error,
                 MESH_ERR_INVALID_ARGUMENT, "mesh_response_read", "whole body of a stream");
    CHECK(read_generated(response, 65536) == 3000000);
    /* Finished: no more writes, no second finish. */
    EXPECT_ERROR(mesh_upload_write(up, buf, 1, STEP_MS, &error), error, MESH_ERR_CLOSED,
                 "finished", "write after finish");
    mesh_response_free(response);
    response = NULL;
    EXPECT_ERROR(mesh_upload_finish(up, STEP_MS, &response, &error), error, MESH_ERR_CLOSED,
                 "finished", "second finish");
    CHECK(response == NULL);
    mesh_upload_free(up);
    mesh_request_free(req);
    free(buf);
}

void scenario_streaming(const mesh_mesh *client) {
    mesh_request *req;
    mesh_response *response = NULL;
    mesh_upload *up = NULL;
    mesh_error *error = NULL;
    unsigned char small[1000];
    size_t n = 0;

    /* 16 MiB up in uneven chunks (chunked encoding), then with a content-length. */
    upload(client, 16UL * 1024 * 1024 + 5, 100003, 0);
    upload(client, 1000000, 65536, 1);
    upload(client, 0, 16, 0);

    /* A whole request body (retries apply), the response streamed in small pieces. */
    req = request("POST", "2500000");
    EXPECT_OK(mesh_request_set_body(req, (const uint8_t *)"hello", 5, &error), error, "body");
    EXPECT_OK(mesh_request_start(req, client, STEP_MS, &response, &error), error, "start");
    CHECK(mesh_response_status(response) == 200);
    CHECK(strcmp(header(response, "x-body-bytes"), "5") == 0);
    CHECK(read_generated(response, 999) == 2500000);
    mesh_response_free(response);
    response = NULL;

    /* A response freed with its body unread, and a zero-capacity read. */
    EXPECT_OK(mesh_request_start(req, client, STEP_MS, &response, &error), error, "start");
    EXPECT_OK(mesh_response_read(response, NULL, 0, STEP_MS, &n, &error), error, "empty read");
    CHECK(n == 0);
    EXPECT_OK(mesh_response_read(response, small, sizeof small, STEP_MS, &n, &error), error,
              "read");
    CHECK(n > 0 && small[1] == 1);
    mesh_response_free(response);
    response = NULL;

    /* mesh_response_read also reads a whole (mesh_request_send) response. */
    mesh_request_free(req);
    req = request("GET", "1234");
    EXPECT_OK(mesh_request_send(req, client, STEP_MS, &response, &error), error, "send");
    CHECK(read_generated(response, 100) == 1234);
    mesh_response_free(response);
    response = NULL;

    /* An upload abandoned half-way is aborted, and the mesh keeps working. */
    mesh_request_free(req);
    req = request("PUT", "10");
    EXPECT_OK(mesh_upload_start(req, client, STEP_MS, &up, &error), error, "upload_start");
    EXPECT_OK(mesh_upload_write(up, small, sizeof small, STEP_MS, &error), error, "write");
    mesh_upload_free(up);
    upload(client, 12345, 4096, 0);

    /* Unknown services and NULLs. */
    mesh_request_free(req);
    EXPECT_OK(mesh_request_new("PUT", "http://unknown.svc:80/", &req, &error), error, "new");
    up = (mesh_upload *)1;
    EXPECT_ERROR(mesh_upload_start(req, client, STEP_MS, &up, &error), error,
                 MESH_ERR_UNKNOWN_SERVICE, "unknown.svc", "upload to an unknown service");
    CHECK(up == NULL);
    EXPECT_ERROR(mesh_upload_start(NULL, client, 0, &up, &error), error, MESH_ERR_NULL_ARGUMENT,
                 "request", "NULL request");
    EXPECT_ERROR(mesh_upload_write(NULL, small, 1, 0, &error), error, MESH_ERR_NULL_ARGUMENT,
                 "upload", "write to NULL");
    EXPECT_ERROR(mesh_upload_finish(NULL, 0, &response, &error), error, MESH_ERR_NULL_ARGUMENT,
                 "upload", "finish NULL");
    EXPECT_ERROR(mesh_response_read(NULL, small, 1, 0, &n, &error), error,
                 MESH_ERR_NULL_ARGUMENT, "response", "read NULL");
    mesh_upload_free(NULL);
    mesh_request_free(req);
    passed++;
    printf("ok streaming_bodies\n");
}
