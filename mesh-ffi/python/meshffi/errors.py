"""Errors as exceptions carrying the library's status and message."""

import ctypes

from ._lib import Status, lib


class MeshError(Exception):
    """A failed call: `status` (a Status) and the library's `message`."""

    def __init__(self, status: int, message: str):
        try:
            self.status = Status(status)
        except ValueError:
            self.status = status
        self.message = message
        name = self.status.name if isinstance(self.status, Status) else str(status)
        super().__init__(f"{name}: {message}")


class NoEndpointError(MeshError):
    """No endpoint of the service can be reached for the port (Status.NO_ENDPOINT), or the
    service is not known at all (the subclass UnknownServiceError)."""


class UnknownServiceError(NoEndpointError):
    """The mesh does not know the service (Status.UNKNOWN_SERVICE): it is not under
    `services:`, in no discovery backend, and named by no VirtualService. Declare or register
    it, or fix the name; the message names the service and the services the mesh knows."""


#: The exception class raised for a status; others raise MeshError itself.
_CLASSES = {Status.NO_ENDPOINT: NoEndpointError, Status.UNKNOWN_SERVICE: UnknownServiceError}


def error_for(status: int, message: str) -> MeshError:
    """The exception for a failed call: MeshError or its subclass for the status."""
    return _CLASSES.get(status, MeshError)(status, message)


def check(status: int, error: ctypes.c_void_p) -> None:
    """Raises MeshError (or its subclass for the status) for a failed status, freeing the
    error object."""
    if status == Status.OK:
        return
    message = "(no message)"
    if error.value:
        raw = lib.mesh_error_message(error)
        message = raw.decode("utf-8", "replace") if raw else message
        lib.mesh_error_free(error)
    raise error_for(status, message)


def encode(name: str, value) -> bytes:
    """A str or bytes argument as bytes for C; NUL cannot be passed."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    if b"\0" in data:
        raise MeshError(Status.INVALID_ARGUMENT, f"{name} contains a NUL byte")
    return data


def timeout_ms(timeout) -> int:
    """Seconds (None: no limit) as the ABI's timeout argument."""
    if timeout is None:
        return 0
    if timeout <= 0:
        raise MeshError(Status.TIMEOUT, "the timeout has already passed")
    return max(1, min(int(timeout * 1000), 0xFFFFFFFF))
