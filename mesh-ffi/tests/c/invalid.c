/* Invalid arguments: NULLs, bad UTF-8, malformed configs and values return errors, never crash. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>

#include "harness.h"

void scenario_invalid_arguments(const mesh_mesh *client);
extern int passed;

void scenario_invalid_arguments(const mesh_mesh *client) {
    mesh_mesh *mesh = (mesh_mesh *)1;
    mesh_tunnel *tunnel = (mesh_tunnel *)1;
    mesh_request *request = (mesh_request *)1;
    mesh_response *response = NULL;
    mesh_server *server = (mesh_server *)1;
    mesh_error *error = NULL;
    const uint8_t *data = (const uint8_t *)1;
    size_t len = 7;

    /* Outputs are cleared before anything else is looked at. */
    EXPECT_ERROR(mesh_mesh_new(NULL, 0, &mesh, &error), error, MESH_ERR_NULL_ARGUMENT, "config",
                 "NULL config");
    CHECK(mesh == NULL);
    EXPECT_ERROR(mesh_mesh_new("{}", 0, NULL, &error), error, MESH_ERR_NULL_ARGUMENT, "mesh_out",
                 "NULL output");
    EXPECT_ERROR(mesh_mesh_new("identity: \xff\xfe", 0, &mesh, &error), error,
                 MESH_ERR_INVALID_UTF8, "UTF-8", "bad UTF-8");
    EXPECT_ERROR(mesh_mesh_new("identiti: {}", 0, &mesh, &error), error, MESH_ERR_CONFIG,
                 "identiti", "unknown field");
    EXPECT_ERROR(mesh_mesh_new("{\"identity\": ", 0, &mesh, &error), error, MESH_ERR_CONFIG,
                 NULL, "truncated JSON");
    EXPECT_ERROR(mesh_mesh_new("identity: { spiffe_id: not-an-id }", 0, &mesh, &error), error,
                 MESH_ERR_CONFIG, "identity.spiffe_id", "bad SPIFFE ID");
    CHECK(mesh == NULL);
    /* A NULL error output is fine: the status alone. */
    CHECK(mesh_mesh_new(NULL, 0, &mesh, NULL) == MESH_ERR_NULL_ARGUMENT);

    EXPECT_ERROR(mesh_tunnel_connect(NULL, "a:1", 0, &tunnel, &error), error,
                 MESH_ERR_NULL_ARGUMENT, "mesh", "NULL mesh");
    CHECK(tunnel == NULL);
    EXPECT_ERROR(mesh_tunnel_connect(client, NULL, 0, &tunnel, &error), error,
                 MESH_ERR_NULL_ARGUMENT, "target", "NULL target");
    EXPECT_ERROR(mesh_tunnel_connect(client, "no-port", 0, &tunnel, &error), error,
                 MESH_ERR_INVALID_ARGUMENT, "host:port", "target without port");
    EXPECT_ERROR(mesh_tunnel_connect(client, "svc:\xc3\x28", 0, &tunnel, &error), error,
                 MESH_ERR_INVALID_UTF8, "target", "bad UTF-8 target");
    /* A service the mesh does not know has its own status; the message names it and says
     * where to declare it. A known service on a port it does not declare is NO_ENDPOINT. */
    EXPECT_ERROR(mesh_tunnel_connect(client, "unknown.svc:80", 0, &tunnel, &error), error,
                 MESH_ERR_UNKNOWN_SERVICE, "unknown.svc", "unknown service");
    CHECK(tunnel == NULL);
    CHECK(mesh_tunnel_connect(client, "unknown.svc:80", 0, &tunnel, &error) ==
          MESH_ERR_UNKNOWN_SERVICE);
    CHECK(strstr(mesh_error_message(error), "services:") != NULL);
    CHECK(strstr(mesh_error_message(error), "inventory.shop.svc.cluster.local") != NULL);
    CHECK(mesh_error_status(error) == MESH_ERR_UNKNOWN_SERVICE);
    mesh_error_free(error);
    error = NULL;
    CHECK(strcmp(mesh_status_name(MESH_ERR_UNKNOWN_SERVICE), "MESH_ERR_UNKNOWN_SERVICE") == 0);
    CHECK(MESH_ERR_UNKNOWN_SERVICE == 18);
    EXPECT_ERROR(mesh_tunnel_connect(client, "inventory.shop.svc.cluster.local:7777", 0, &tunnel,
                                     &error),
                 error, MESH_ERR_NO_ENDPOINT, "not 7777", "undeclared port");

    EXPECT_ERROR(mesh_request_new("GET", "not a url", &request, &error), error,
                 MESH_ERR_INVALID_ARGUMENT, "URL", "bad URL");
    CHECK(request == NULL);
    EXPECT_ERROR(mesh_request_new("GET", "https://svc:80/", &request, &error), error,
                 MESH_ERR_INVALID_ARGUMENT, "http://", "https URL");
    EXPECT_ERROR(mesh_request_new("BAD METHOD", "http://svc:80/", &request, &error), error,
                 MESH_ERR_INVALID_ARGUMENT, "method", "bad method");
    EXPECT_OK(mesh_request_new("GET", "http://unknown.svc:80/", &request, &error), error, "new");
    EXPECT_ERROR(mesh_request_add_header(request, "bad header", "v", &error), error,
                 MESH_ERR_INVALID_ARGUMENT, "header name", "bad header name");
    EXPECT_ERROR(mesh_request_add_header(request, "x", "line\nbreak", &error), error,
                 MESH_ERR_INVALID_ARGUMENT, "control", "bad header value");
    EXPECT_ERROR(mesh_request_set_body(request, NULL, 5, &error), error, MESH_ERR_NULL_ARGUMENT,
                 "body", "NULL body with a length");
    EXPECT_OK(mesh_request_set_body(request, NULL, 0, &error), error, "empty body");
    EXPECT_ERROR(mesh_request_send(request, NULL, 0, &response, &error), error,
                 MESH_ERR_NULL_ARGUMENT, "mesh", "send without mesh");
    EXPECT_ERROR(mesh_request_send(request, client, 0, &response, &error), error,
                 MESH_ERR_UNKNOWN_SERVICE, "unknown.svc", "HTTP to an unknown service");
    CHECK(response == NULL);
    mesh_request_free(request);
    EXPECT_OK(mesh_request_new("GET", "http://inventory.shop.svc.cluster.local:7777/", &request,
                               &error),
              error, "new");
    EXPECT_ERROR(mesh_request_send(request, client, 0, &response, &error), error,
                 MESH_ERR_NO_ENDPOINT, "not 7777", "HTTP to an undeclared port");
    CHECK(response == NULL);
    mesh_request_free(request);
    EXPECT_ERROR(mesh_response_body(NULL, &data, &len, &error), error, MESH_ERR_NULL_ARGUMENT,
                 "response", "body of NULL");
    CHECK(data == NULL && len == 0);

    EXPECT_ERROR(mesh_server_start(NULL, NULL, NULL, &server, &error), error,
                 MESH_ERR_NULL_ARGUMENT, "mesh", "server without mesh");
    CHECK(server == NULL);
    EXPECT_ERROR(mesh_server_accept(NULL, 0, &tunnel, &error), error, MESH_ERR_NULL_ARGUMENT,
                 "server", "accept on NULL");
    EXPECT_ERROR(mesh_server_close(NULL, &error), error, MESH_ERR_NULL_ARGUMENT, "server",
                 "close NULL");
    EXPECT_ERROR(mesh_server_shutdown(NULL, 0, NULL, &error), error, MESH_ERR_NULL_ARGUMENT,
                 "server", "shutdown NULL");

    /* Accessors and frees take NULL quietly. */
    CHECK(mesh_mesh_spiffe_id(NULL) == NULL);
    CHECK(mesh_tunnel_fd(NULL) == -1 && mesh_tunnel_take_fd(NULL) == -1);
    CHECK(mesh_tunnel_peer_id(NULL) == NULL && mesh_tunnel_peer_addr(NULL) == NULL);
    CHECK(mesh_tunnel_target_port(NULL) == 0);
    CHECK(mesh_tunnel_get_state(NULL) == MESH_TUNNEL_CLOSED);
    CHECK(mesh_server_port(NULL) == 0);
    CHECK(mesh_response_status(NULL) == 0 && mesh_response_header_count(NULL) == 0);
    CHECK(mesh_response_header_name(NULL, 0) == NULL);
    CHECK(mesh_error_message(NULL) == NULL);
    CHECK(mesh_error_status(NULL) == MESH_ERR_NULL_ARGUMENT);
    CHECK(strcmp(mesh_status_name(MESH_ERR_TIMEOUT), "MESH_ERR_TIMEOUT") == 0);
    CHECK(mesh_status_name(9999) == NULL);
    mesh_mesh_free(NULL);
    mesh_tunnel_free(NULL);
    mesh_server_free(NULL);
    mesh_request_free(NULL);
    mesh_response_free(NULL);
    mesh_error_free(NULL);
    passed++;
    printf("ok invalid_arguments\n");
}
