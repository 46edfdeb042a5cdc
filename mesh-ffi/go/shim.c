// Bridges the C callback type to the exported Go function: cgo files with //export may only
// declare C functions, so the adapter lives here. The user_data pointer carries a cgo.Handle.
#include "_cgo_export.h"

static int mesh_go_authorize(void *user_data, const char *peer, const char *addr,
                             uint16_t port) {
    return goAuthorize((uintptr_t)user_data, (char *)peer, (char *)addr, port);
}

mesh_status mesh_go_server_start(const mesh_mesh *mesh, uintptr_t handle, mesh_server **out,
                                 mesh_error **error) {
    return mesh_server_start(mesh, handle != 0 ? mesh_go_authorize : NULL, (void *)handle, out,
                             error);
}
