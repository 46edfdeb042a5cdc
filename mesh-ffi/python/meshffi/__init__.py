"""meshffi: the service mesh from Python, through its C ABI (ctypes; nothing to compile).

    with meshffi.Mesh(open("mesh.yaml").read()) as mesh:
        sock = mesh.connect("inventory.shop.svc.cluster.local:9000")   # a socket.socket
        response = mesh.request("GET", "http://inventory.shop.svc.cluster.local:8080/stock")

The library is found through $MESH_FFI_LIB, the repository's target/ directory, or the
system's library path.
"""

from ._lib import Status, lib
from .errors import MeshError, NoEndpointError, UnknownServiceError
from .mesh import Listener, Mesh, Response, StreamingResponse, TunnelSocket

__all__ = [
    "Listener",
    "Mesh",
    "MeshError",
    "NoEndpointError",
    "Response",
    "Status",
    "StreamingResponse",
    "TunnelSocket",
    "UnknownServiceError",
    "version",
]


def version() -> str:
    """The loaded libmesh_ffi's version."""
    return lib.mesh_version().decode()


try:
    from .httpx_transport import MeshTransport  # noqa: F401

    __all__.append("MeshTransport")
except ImportError:  # httpx is optional
    pass

try:
    from .requests_adapter import MeshAdapter  # noqa: F401

    __all__.append("MeshAdapter")
except ImportError:  # requests is optional
    pass
