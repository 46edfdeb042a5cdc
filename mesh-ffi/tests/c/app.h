/*
 * The test application behind the inbound server: one behaviour per target port.
 *   9000 echo until EOF, then half-close        9001 a minimal HTTP/1.1 responder
 *   9002 read 1 byte, close with data unread     9003 say "ready\n", wait for EOF (drain test)
 *   9004 write the peer's SPIFFE ID and close    9005 count bytes until EOF, then answer
 *   9006 streaming HTTP/1.1: hashes the (chunked or sized) request body, answers its size and
 *        hash in x-body-bytes / x-body-fnv with a body of x-size bytes (byte i = i % 251)
 */
#ifndef MESH_TEST_APP_H
#define MESH_TEST_APP_H

#include "mesh.h"

/* Starts accepting on `server` in a background thread. */
void app_start(const mesh_server *server);

/* Waits for the accept loop to see MESH_ERR_CLOSED and for every handler to finish. */
void app_join(void);

/* Tunnels handled so far, and whether the drain-test tunnel (9003) ended in a reset. */
int app_handled(void);
int app_drain_tunnel_was_reset(void);

#endif
