/*
 * The FFI scenario list, from C, against real loopback meshes: two workloads created through
 * the ABI (one serving, several calling) sharing a development CA in a temporary directory.
 * Run under AddressSanitizer + LeakSanitizer by mesh-ffi/tests/c_abi.rs.
 *
 * usage: scenarios TEMP_DIR
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "app.h"
#include "harness.h"

void scenario_streaming(const mesh_mesh *client);

#define SERVICE "inventory.shop.svc.cluster.local"
#define INVENTORY "spiffe://cluster.local/ns/shop/sa/inventory"
#define ORDERS "spiffe://cluster.local/ns/shop/sa/orders"
#define STEP_MS 20000

static const char *dir;
int passed;
static int blocked_calls;
static pthread_mutex_t calls_lock = PTHREAD_MUTEX_INITIALIZER;

static const char POLICY[] =
    "apiVersion: security.istio.io/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: { name: shop-only, namespace: shop }\n"
    "spec:\n"
    "  selector: { matchLabels: { app: inventory } }\n"
    "  action: ALLOW\n"
    "  rules:\n"
    "  - from: [{ source: { principals: [cluster.local/ns/shop/sa/orders,\n"
    "                                    cluster.local/ns/shop/sa/blocked] } }]\n";

/* The host's own check: refuses the `blocked` workload that the policy allows. */
static int authorize(void *user_data, const char *peer, const char *addr, uint16_t port) {
    (void)addr;
    (void)port;
    CHECK(user_data == (void *)&blocked_calls);
    if (strcmp(peer, "spiffe://cluster.local/ns/shop/sa/blocked") == 0) {
        pthread_mutex_lock(&calls_lock);
        blocked_calls++;
        pthread_mutex_unlock(&calls_lock);
        return 0;
    }
    return 1;
}

static mesh_mesh *new_mesh(const char *config) {
    mesh_mesh *mesh = NULL;
    mesh_error *error = NULL;
    EXPECT_OK(mesh_mesh_new(config, STEP_MS, &mesh, &error), error, "mesh_mesh_new");
    CHECK(mesh != NULL);
    return mesh;
}

/* A caller (JSON config) with `id` that expects `server_id` behind the inventory service. */
static mesh_mesh *caller(const char *id, const char *server_id, uint16_t hbone_port) {
    char config[2048];
    snprintf(config, sizeof config,
             "{\"identity\": {\"spiffe_id\": \"%s\", \"dev_ca\": {\"dir\": \"%s/ca\"}},"
             " \"services\": [{\"host\": \"" SERVICE "\","
             "   \"ports\": [{\"port\": 9000}, {\"port\": 9001, \"protocol\": \"http\"},"
             "               {\"port\": 9002}, {\"port\": 9003}, {\"port\": 9004},"
             "               {\"port\": 9005}, {\"port\": 9006, \"protocol\": \"http\"}],"
             "   \"identities\": [\"%s\"],"
             "   \"endpoints\": [{\"address\": \"127.0.0.1:9000\", \"hbone_port\": %u}]}]}",
             id, dir, server_id, hbone_port);
    return new_mesh(config);
}

static mesh_tunnel *connect_ok(const mesh_mesh *mesh, const char *target) {
    mesh_tunnel *tunnel = NULL;
    mesh_error *error = NULL;
    EXPECT_OK(mesh_tunnel_connect(mesh, target, STEP_MS, &tunnel, &error), error, target);
    CHECK(tunnel != NULL && mesh_tunnel_fd(tunnel) >= 0);
    return tunnel;
}

static void scenario_mtls_success(const mesh_mesh *client) {
    char buf[256];
    long n;
    mesh_tunnel *tunnel = connect_ok(client, SERVICE ":9004");
    CHECK(strcmp(mesh_tunnel_peer_id(tunnel), INVENTORY) == 0);
    CHECK(mesh_tunnel_target_port(tunnel) == 9004);
    n = read_until_eof(mesh_tunnel_fd(tunnel), buf, sizeof buf - 1);
    CHECK(n > 0);
    buf[n] = '\0';
    if (strcmp(buf, ORDERS) != 0) FAIL("server saw peer %s", buf);
    mesh_tunnel_free(tunnel);
    passed++;
    printf("ok mtls_success\n");
}

static void scenario_wrong_spiffe_id(uint16_t port) {
    mesh_mesh *client = caller(ORDERS, "spiffe://cluster.local/ns/shop/sa/impostor", port);
    mesh_tunnel *tunnel = NULL;
    mesh_error *error = NULL;
    mesh_status status = mesh_tunnel_connect(client, SERVICE ":9000", STEP_MS, &tunnel, &error);
    EXPECT_ERROR(status, error, MESH_ERR_TLS, "impostor", "connect to the wrong identity");
    CHECK(tunnel == NULL);
    mesh_mesh_free(client);
    passed++;
    printf("ok wrong_spiffe_id\n");
}

static void scenario_authorization_deny(uint16_t port) {
    mesh_mesh *intruder = caller("spiffe://cluster.local/ns/other/sa/intruder", INVENTORY, port);
    mesh_mesh *blocked = caller("spiffe://cluster.local/ns/shop/sa/blocked", INVENTORY, port);
    mesh_tunnel *tunnel = NULL;
    mesh_error *error = NULL;
    mesh_status status = mesh_tunnel_connect(intruder, SERVICE ":9000", STEP_MS, &tunnel, &error);
    EXPECT_ERROR(status, error, MESH_ERR_DENIED, "401", "policy denial");
    status = mesh_tunnel_connect(blocked, SERVICE ":9000", STEP_MS, &tunnel, &error);
    EXPECT_ERROR(status, error, MESH_ERR_DENIED, "401", "callback denial");
    CHECK(tunnel == NULL);
    pthread_mutex_lock(&calls_lock);
    CHECK(blocked_calls == 1);
    pthread_mutex_unlock(&calls_lock);
    mesh_mesh_free(intruder);
    mesh_mesh_free(blocked);
    passed++;
    printf("ok authorization_deny\n");
}

static void scenario_half_close(const mesh_mesh *client) {
    char payload[100000];
    char reply[64];
    long n;
    mesh_tunnel *tunnel = connect_ok(client, SERVICE ":9005");
    int fd = mesh_tunnel_take_fd(tunnel);
    CHECK(fd >= 0 && mesh_tunnel_take_fd(tunnel) == -1 && mesh_tunnel_fd(tunnel) == -1);
    memset(payload, 'x', sizeof payload);
    CHECK(write_all(fd, payload, sizeof payload) == 0);
    CHECK(shutdown(fd, SHUT_WR) == 0); /* our FIN; the server still answers */
    n = read_until_eof(fd, reply, sizeof reply - 1);
    CHECK(n > 0);
    reply[n] = '\0';
    if (strcmp(reply, "got 100000 bytes") != 0) FAIL("reply: %s", reply);
    CHECK(mesh_tunnel_get_state(tunnel) != MESH_TUNNEL_RESET);
    close(fd);
    mesh_tunnel_free(tunnel);
    passed++;
    printf("ok half_close\n");
}

static void scenario_reset(const mesh_mesh *client) {
    char payload[65536];
    char buf[16];
    long n;
    mesh_tunnel *tunnel = connect_ok(client, SERVICE ":9002");
    int fd = mesh_tunnel_fd(tunnel);
    memset(payload, 'r', sizeof payload);
    CHECK(write_all(fd, payload, sizeof payload) == 0);
    /* The server closes with our data unread: a reset, seen as EOF plus the RESET state. */
    n = read_until_eof(fd, buf, sizeof buf);
    CHECK(n == 0 || n == -ECONNRESET);
    CHECK(mesh_tunnel_get_state(tunnel) == MESH_TUNNEL_RESET);
    mesh_tunnel_free(tunnel);
    passed++;
    printf("ok reset\n");
}

struct writer {
    int fd;
    size_t size;
    uint64_t hash;
};

static void *write_random(void *arg) {
    struct writer *w = arg;
    char chunk[32768];
    size_t sent = 0;
    unsigned int seed = 7;
    w->hash = FNV_START;
    while (sent < w->size) {
        size_t i, n = w->size - sent < sizeof chunk ? w->size - sent : sizeof chunk;
        for (i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            chunk[i] = (char)(seed >> 16);
        }
        w->hash = fnv1a(w->hash, chunk, n);
        CHECK(write_all(w->fd, chunk, n) == 0);
        sent += n;
    }
    CHECK(shutdown(w->fd, SHUT_WR) == 0);
    return NULL;
}

static void scenario_large_transfer(const mesh_mesh *client) {
    struct writer w;
    pthread_t thread;
    char chunk[65536];
    size_t received = 0;
    uint64_t hash = FNV_START;
    ssize_t n;
    mesh_tunnel *tunnel = connect_ok(client, SERVICE ":9000");
    w.fd = mesh_tunnel_fd(tunnel);
    w.size = 16u << 20;
    CHECK(pthread_create(&thread, NULL, write_random, &w) == 0);
    while ((n = read(w.fd, chunk, sizeof chunk)) > 0) {
        hash = fnv1a(hash, chunk, (size_t)n);
        received += (size_t)n;
    }
    CHECK(n == 0);
    pthread_join(thread, NULL);
    if (received != w.size || hash != w.hash) {
        FAIL("echoed %zu of %zu bytes, checksum %s", received, w.size,
             hash == w.hash ? "equal" : "different");
    }
    mesh_tunnel_free(tunnel);
    passed++;
    printf("ok large_transfer (16 MiB echoed, checksum equal)\n");
}

#define THREADS 16
#define TUNNELS_PER_THREAD 8

static void *concurrent_worker(void *arg) {
    const mesh_mesh *client = arg;
    int i;
    for (i = 0; i < TUNNELS_PER_THREAD; i++) {
        char out[4096], in[4096];
        mesh_tunnel *tunnel = connect_ok(client, SERVICE ":9000");
        int fd = mesh_tunnel_fd(tunnel);
        memset(out, 'a' + i, sizeof out);
        CHECK(write_all(fd, out, sizeof out) == 0);
        CHECK(read_exact(fd, in, sizeof in) == 0);
        CHECK(memcmp(in, out, sizeof out) == 0);
        mesh_tunnel_free(tunnel);
    }
    return NULL;
}

static void scenario_concurrent_tunnels(const mesh_mesh *client) {
    pthread_t threads[THREADS];
    int i;
    for (i = 0; i < THREADS; i++) {
        CHECK(pthread_create(&threads[i], NULL, concurrent_worker, (void *)client) == 0);
    }
    for (i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    passed++;
    printf("ok concurrent_tunnels (%d threads x %d tunnels)\n", THREADS, TUNNELS_PER_THREAD);
}

static void scenario_http(const mesh_mesh *client) {
    mesh_request *request = NULL;
    mesh_response *response = NULL;
    mesh_error *error = NULL;
    const uint8_t *body = NULL;
    size_t len = 0, i;
    int saw_peer = 0;
    EXPECT_OK(mesh_request_new("POST", "http://" SERVICE ":9001/stock?id=7", &request, &error),
              error, "mesh_request_new");
    EXPECT_OK(mesh_request_add_header(request, "x-trace", "abc", &error), error, "add_header");
    EXPECT_OK(mesh_request_set_body(request, (const uint8_t *)"hello", 5, &error), error,
              "set_body");
    EXPECT_OK(mesh_request_send(request, client, STEP_MS, &response, &error), error,
              "mesh_request_send");
    CHECK(mesh_response_status(response) == 200);
    for (i = 0; i < mesh_response_header_count(response); i++) {
        if (strcmp(mesh_response_header_name(response, i), "x-peer") == 0) {
            CHECK(strcmp(mesh_response_header_value(response, i), ORDERS) == 0);
            saw_peer = 1;
        }
    }
    CHECK(saw_peer);
    CHECK(mesh_response_header_name(response, i) == NULL);
    EXPECT_OK(mesh_response_body(response, &body, &len, &error), error, "body");
    if (len != strlen("POST /stock?id=7 hello") || memcmp(body, "POST /stock?id=7 hello", len)) {
        FAIL("body: %.*s", (int)len, (const char *)body);
    }
    mesh_response_free(response);
    mesh_request_free(request);
    passed++;
    printf("ok http_request\n");
}

static void scenario_forked_child(const mesh_mesh *client, const mesh_server *server) {
    pid_t pid = fork();
    int wstatus = 0;
    CHECK(pid >= 0);
    if (pid == 0) {
        mesh_tunnel *tunnel = NULL;
        mesh_error *error = NULL;
        int ok = mesh_tunnel_connect(client, SERVICE ":9000", 1000, &tunnel, &error) ==
                     MESH_ERR_FORKED &&
                 strstr(mesh_error_message(error), "forked") != NULL;
        mesh_error_free(error);
        error = NULL;
        ok = ok && mesh_server_accept(server, 1000, &tunnel, &error) == MESH_ERR_FORKED;
        mesh_error_free(error);
        _exit(ok ? 0 : 1);
    }
    CHECK(waitpid(pid, &wstatus, 0) == pid);
    CHECK(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
    passed++;
    printf("ok forked_child\n");
}

static void scenario_shutdown_with_open_tunnels(const mesh_mesh *client, mesh_server *server) {
    char ready[6];
    char buf[16];
    uint32_t cut = 99;
    mesh_error *error = NULL;
    mesh_tunnel *tunnel = connect_ok(client, SERVICE ":9003");
    mesh_tunnel *late = NULL;
    CHECK(read_exact(mesh_tunnel_fd(tunnel), ready, sizeof ready) == 0);
    EXPECT_OK(mesh_server_shutdown(server, STEP_MS, &cut, &error), error, "shutdown");
    CHECK(cut == 1);
    CHECK(read_until_eof(mesh_tunnel_fd(tunnel), buf, sizeof buf) >= 0);
    CHECK(mesh_tunnel_get_state(tunnel) == MESH_TUNNEL_RESET);
    mesh_tunnel_free(tunnel);
    app_join();
    CHECK(app_drain_tunnel_was_reset() == 1);
    /* Nothing listens any more. */
    EXPECT_ERROR(mesh_tunnel_connect(client, SERVICE ":9000", STEP_MS, &late, &error), error,
                 MESH_ERR_UNAVAILABLE, NULL, "connect after shutdown");
    EXPECT_ERROR(mesh_server_accept(server, 0, &late, &error), error, MESH_ERR_CLOSED, NULL,
                 "accept after shutdown");
    passed++;
    printf("ok shutdown_with_open_tunnels (%d tunnels served)\n", app_handled());
}

void scenario_invalid_arguments(const mesh_mesh *client);

int main(int argc, char **argv) {
    char path[1024], config[2048];
    FILE *f;
    mesh_mesh *inventory, *orders;
    mesh_server *server = NULL;
    mesh_error *error = NULL;
    mesh_tunnel *none = NULL;
    uint16_t port;

    if (argc != 2) FAIL("usage: %s TEMP_DIR", argv[0]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    dir = argv[1];
    printf("mesh-ffi %s\n", mesh_version());

    snprintf(path, sizeof path, "%s/policy.yaml", dir);
    f = fopen(path, "w");
    CHECK(f != NULL);
    fputs(POLICY, f);
    fclose(f);
    snprintf(config, sizeof config,
             "workload: { name: inventory, namespace: shop, labels: { app: inventory } }\n"
             "identity:\n  spiffe_id: " INVENTORY "\n  dev_ca: { dir: %s/ca }\n"
             "inbound: { listen: \"127.0.0.1:0\", drain_timeout: 300ms }\n"
             "policies: [%s]\n",
             dir, path);
    inventory = new_mesh(config);
    CHECK(strcmp(mesh_mesh_spiffe_id(inventory), INVENTORY) == 0);
    EXPECT_OK(mesh_server_start(inventory, authorize, &blocked_calls, &server, &error), error,
              "mesh_server_start");
    port = mesh_server_port(server);
    CHECK(port != 0);
    EXPECT_ERROR(mesh_server_accept(server, 50, &none, &error), error, MESH_ERR_TIMEOUT, "50 ms",
                 "accept with nothing arriving");
    passed++;
    printf("ok accept_timeout\n");
    app_start(server);
    orders = caller(ORDERS, INVENTORY, port);

    scenario_mtls_success(orders);
    scenario_wrong_spiffe_id(port);
    scenario_authorization_deny(port);
    scenario_half_close(orders);
    scenario_reset(orders);
    scenario_large_transfer(orders);
    scenario_concurrent_tunnels(orders);
    scenario_http(orders);
    scenario_streaming(orders);
    scenario_invalid_arguments(orders);
    scenario_forked_child(orders, server);
    scenario_shutdown_with_open_tunnels(orders, server);

    mesh_server_free(server);
    mesh_mesh_free(orders);
    mesh_mesh_free(inventory);
    printf("%d passed, 0 failed\n", passed);
    return 0;
}
