"""Loads libmesh_ffi and declares the C ABI's signatures (ctypes; nothing to compile)."""

import ctypes
import ctypes.util
import enum
import os
import pathlib

_HERE = pathlib.Path(__file__).resolve().parent
# mesh-ffi/python/meshffi -> the workspace's target directory.
_TARGET = _HERE.parents[2] / "target"


def _find() -> str:
    explicit = os.environ.get("MESH_FFI_LIB")
    if explicit:
        return explicit
    for profile in ("debug", "release"):
        candidate = _TARGET / profile / "libmesh_ffi.so"
        if candidate.exists():
            return str(candidate)
    found = ctypes.util.find_library("mesh_ffi")
    if found:
        return found
    raise OSError(
        "libmesh_ffi.so not found: build it with `cargo build -p mesh-ffi` or set MESH_FFI_LIB "
        "to its path"
    )


lib = ctypes.CDLL(_find())


class Status(enum.IntEnum):
    """The library's stable status codes (mesh_status in mesh.h)."""

    OK = 0
    NULL_ARGUMENT = 1
    INVALID_UTF8 = 2
    INVALID_ARGUMENT = 3
    CONFIG = 4
    PANIC = 5
    POISONED = 6
    FORKED = 7
    TIMEOUT = 8
    NO_ENDPOINT = 9
    TLS = 10
    DENIED = 11
    UNAVAILABLE = 12
    OVERLOADED = 13
    HTTP = 14
    IO = 15
    CLOSED = 16
    WRONG_THREAD = 17
    UNKNOWN_SERVICE = 18


TUNNEL_RESET = 2

_p = ctypes.c_void_p
_pp = ctypes.POINTER(ctypes.c_void_p)
_s = ctypes.c_char_p
_u32 = ctypes.c_uint32
_u16 = ctypes.c_uint16
_size = ctypes.c_size_t

AUTHORIZE = ctypes.CFUNCTYPE(ctypes.c_int, _p, _s, _s, _u16)


def _sig(name, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)


_sig("mesh_version", _s)
_sig("mesh_status_name", _s, _u32)
_sig("mesh_error_status", _u32, _p)
_sig("mesh_error_message", _s, _p)
_sig("mesh_error_free", None, _p)
_sig("mesh_mesh_new", _u32, _s, _u32, _pp, _pp)
_sig("mesh_mesh_spiffe_id", _s, _p)
_sig("mesh_mesh_free", None, _p)
_sig("mesh_tunnel_connect", _u32, _p, _s, _u32, _pp, _pp)
_sig("mesh_tunnel_take_fd", ctypes.c_int, _p)
_sig("mesh_tunnel_peer_id", _s, _p)
_sig("mesh_tunnel_peer_addr", _s, _p)
_sig("mesh_tunnel_target_port", _u16, _p)
_sig("mesh_tunnel_get_state", _u32, _p)
_sig("mesh_tunnel_free", None, _p)
_sig("mesh_server_start", _u32, _p, AUTHORIZE, _p, _pp, _pp)
_sig("mesh_server_port", _u16, _p)
_sig("mesh_server_accept", _u32, _p, _u32, _pp, _pp)
_sig("mesh_server_close", _u32, _p, _pp)
_sig("mesh_server_shutdown", _u32, _p, _u32, ctypes.POINTER(_u32), _pp)
_sig("mesh_server_free", None, _p)
_sig("mesh_request_new", _u32, _s, _s, _pp, _pp)
_sig("mesh_request_add_header", _u32, _p, _s, _s, _pp)
_sig("mesh_request_set_body", _u32, _p, ctypes.c_char_p, _size, _pp)
_sig("mesh_request_set_response_limit", _u32, _p, _size, _pp)
_sig("mesh_request_send", _u32, _p, _p, _u32, _pp, _pp)
_sig("mesh_request_free", None, _p)
_sig("mesh_response_status", _u16, _p)
_sig("mesh_response_header_count", _size, _p)
_sig("mesh_response_header_name", _s, _p, _size)
_sig("mesh_response_header_value", _s, _p, _size)
_sig("mesh_response_body", _u32, _p, ctypes.POINTER(ctypes.POINTER(ctypes.c_uint8)), ctypes.POINTER(_size), _pp)
_sig("mesh_response_free", None, _p)
_sig("mesh_request_start", _u32, _p, _p, _u32, _pp, _pp)
_sig("mesh_response_read", _u32, _p, ctypes.c_void_p, _size, _u32, ctypes.POINTER(_size), _pp)
_sig("mesh_upload_start", _u32, _p, _p, _u32, _pp, _pp)
_sig("mesh_upload_write", _u32, _p, ctypes.c_char_p, _size, _u32, _pp)
_sig("mesh_upload_finish", _u32, _p, _u32, _pp, _pp)
_sig("mesh_upload_free", None, _p)
